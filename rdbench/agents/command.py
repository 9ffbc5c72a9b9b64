"""command: an agent in any language, run as a program that speaks JSON lines.

The program reads one JSON message a line on stdin and answers each `reset` and
`observation` message with one `action` line on stdout; it may print logs on stderr. The
protocol is documented in docs/agent-protocol.md, with a complete example agent in
examples/echo_agent.py. A program that exits, prints something that is not a protocol
message, or stays silent past `reply_timeout` raises AgentError, which ends the episode
(the workspace is still graded) with a message saying what happened.

Before an action the program may send model events (`model_request`, `model_reply`,
`retry`: what its model was asked and answered), which go to the episode's recorder; one
that does not fit its record model is a protocol error. The reset message carries the
episode's seed for the program's own randomness and its model calls.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

import structlog

from rdbench.agents.base import (
    AgentConfigError,
    AgentError,
    ModelEventRecorder,
    TaskInfo,
    Usage,
    agent,
)
from rdbench.agents.model_events import (
    MODEL_EVENTS,
    ModelEventError,
    check_model_event,
    discard,
)
from rdbench.agents.pricing import find_price, price_table

log = structlog.get_logger()

PROTOCOL_VERSION = 1
STDERR_LINES_KEPT = 40
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@agent("command")
class CommandAgent:
    """An external program speaking JSON lines on stdin/stdout (--command 'prog args')."""

    name = "command"

    def __init__(
        self,
        *,
        command: str | list[str] | None = None,
        cwd: str | None = None,
        reply_timeout: float = 3600.0,
        exit_grace: float = 5.0,
        price_file: str | None = None,
    ):
        if not command:
            raise AgentConfigError(
                "The command agent needs --command, the program to run, e.g. "
                "--command 'python examples/echo_agent.py' (see docs/agent-protocol.md)"
            )
        self.args = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.args:
            raise AgentConfigError("--command is empty; give the program to run")
        program = self.args[0]
        if shutil.which(program) is None and not Path(cwd or ".", program).is_file():
            raise AgentConfigError(
                f"--command: cannot find the program {program!r}; give a path to it or put it "
                "on PATH"
            )
        if reply_timeout <= 0:
            raise AgentConfigError(f"Expected reply_timeout > 0 seconds, got {reply_timeout}")
        self.cwd = cwd
        self.reply_timeout = reply_timeout
        self.exit_grace = exit_grace
        self.prices = price_table(price_file)
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
        self._usage = Usage()
        self._waiting_reply = False
        self._stderr_reader: threading.Thread | None = None
        self._record: ModelEventRecorder = discard

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Start the program and send it the task; its first action answers this."""
        self.close()
        self._usage = Usage()
        self._record = info.record
        self._lines = queue.Queue()
        self._stderr.clear()
        try:
            self._process = subprocess.Popen(
                self.args, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as error:
            raise AgentError(f"Cannot start the agent program {self.args}: {error}") from error
        assert self._process.stdout is not None and self._process.stderr is not None
        _pump(self._process.stdout, self._lines.put, lambda: self._lines.put(None))
        self._stderr_reader = _pump(self._process.stderr, self._keep_stderr, lambda: None)
        log.info("command.start", args=self.args, pid=self._process.pid)
        task = info.task
        self._send({
            "type": "reset", "protocol": PROTOCOL_VERSION,
            "task": {"id": task.id, "version": task.version, "title": task.title},
            "instructions": info.instructions, "tools": info.tools, "budget": info.budget,
            "seed": info.seed, "observation": observation,
        })
        self._waiting_reply = True

    def act(self, observation: str) -> dict[str, Any]:
        """Send the observation (the first one came with reset) and read the action."""
        if self._process is None:
            raise AgentError("The agent program is not running; reset() starts it")
        if not self._waiting_reply:
            self._send({"type": "observation", "observation": observation})
        self._waiting_reply = False
        message = self._receive()
        self._take_usage(message.get("usage"))
        return {"tool": message.get("tool"), "input": message.get("input", {})}

    def usage(self) -> Usage:
        """What the program reported in its actions' `usage` (running totals)."""
        return self._usage

    def close(self) -> None:
        """Tell the program the episode is over, then make sure it ends."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None and process.stdin is not None:
                process.stdin.write(json.dumps({"type": "end"}) + "\n")
                process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(timeout=self.exit_grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.info("command.end", returncode=process.returncode)

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise self._died("before it could read its input") from error

    def _receive(self) -> dict[str, Any]:
        while True:
            try:
                line = self._lines.get(timeout=self.reply_timeout)
            except queue.Empty:
                raise AgentError(
                    f"The agent program sent no action within {self.reply_timeout:g} s"
                ) from None
            if line is None:
                raise self._died("before sending an action")
            if not line.strip():
                continue
            message = self._parse(line)
            if message.get("type") == "log":
                log.info("command.log", message=str(message.get("message", ""))[:2000])
                continue
            if message.get("type") in MODEL_EVENTS:
                self._forward(message)
                continue
            if message.get("type") != "action":
                raise AgentError(
                    f"The agent program sent a message of type {message.get('type')!r}; it "
                    "must answer with {\"type\": \"action\", \"tool\": ..., \"input\": {...}} "
                    f"(or send a log or model event first: {sorted(MODEL_EVENTS)}; see "
                    "docs/agent-protocol.md)"
                )
            return message

    def _forward(self, message: dict[str, Any]) -> None:
        """Hand a model event the program sent to the episode's recorder, once checked."""
        event_type = str(message["type"])
        fields = {name: value for name, value in message.items() if name != "type"}
        try:
            check_model_event(event_type, fields)
        except ModelEventError as error:
            raise AgentError(
                f"The agent program sent a malformed model event: {error} (see "
                "docs/agent-protocol.md, Model events)"
            ) from None
        self._record(event_type, fields)

    def _parse(self, line: str) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            raise AgentError(
                f"The agent program printed a line that is not a JSON message on stdout: "
                f"{line.strip()[:200]!r}. Every stdout line must be one JSON object (see "
                "docs/agent-protocol.md); print logs to stderr."
            )
        return message

    def _take_usage(self, reported: Any) -> None:
        if not isinstance(reported, dict):
            return
        usage = Usage(requests=int(reported.get("requests", 0) or 0))
        for field in USAGE_FIELDS:
            setattr(usage, field, int(reported.get(field, 0) or 0))
        model = reported.get("model")
        if reported.get("cost_usd") is not None:
            usage.cost_usd = float(reported["cost_usd"])
        elif isinstance(model, str) and (price := find_price(model, self.prices)) is not None:
            usage.cost_usd = price.cost(**{field: getattr(usage, field) for field in USAGE_FIELDS})
        usage.retry_wait_s = float(reported.get("retry_wait_s", 0) or 0)
        if model:
            usage.extra["model"] = model
        self._usage = usage

    def _keep_stderr(self, line: str) -> None:
        self._stderr.append(line.rstrip("\n"))
        log.debug("command.stderr", line=line.rstrip("\n")[:500])

    def _died(self, when: str) -> AgentError:
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        if self._stderr_reader is not None:
            self._stderr_reader.join(timeout=2)
        tail = "\n".join(self._stderr) or "(nothing)"
        return AgentError(
            f"The agent program {self.args} exited with code {code} {when}. "
            f"The last lines it printed on stderr:\n{tail}"
        )


def _pump(stream: IO[str], put: Any, at_end: Any) -> threading.Thread:
    """Read `stream` line by line in a thread, handing each line to `put`."""

    def run() -> None:
        try:
            for line in stream:
                put(line)
        except (OSError, ValueError):
            pass
        finally:
            at_end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
