"""Lab tools: the tools a task defines ([[tools]] in task.toml), run in the episode's lab sandbox.

A lab tool is trusted code of the task's (an experiment on hidden data, say) that the agent
may call but never read or change. It runs in a sandbox of its own, made by the same factory as
grading sandboxes and never the agent's: the task's grader/ folder is copied to GRADER_DIR and
its lab/ folder to LAB_DIR (GRADER_DIR/lab), owned by root and readable by root only, and the
command runs there as root, with the tool's input (checked against its schema) as JSON on
stdin. Its stdout is what the agent reads; a non-zero exit or a timeout is an error the agent
reads. The lab sandbox starts on the first call, serves every later call of the episode and is
closed with it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import structlog

from rdbench.grading import SandboxFactory, install_grader
from rdbench.sandbox.base import GRADER_DIR, Sandbox, SandboxError
from rdbench.task import LabTool, TaskSpec
from rdbench.tools import ActionError

log = structlog.get_logger()

LAB_DIR = f"{GRADER_DIR}/lab"  # the sandboxes' root-only writable place holds it
MAX_ERROR_CHARS = 2_000  # of a failed call's output, shown to the agent


class LabSession:
    """The lab sandbox of one episode: started by the first lab tool call, reused by the
    rest, removed by close()."""

    def __init__(self, task: TaskSpec, factory: SandboxFactory, labels: dict[str, str]):
        self.task = task
        self._factory = factory
        self._labels = labels
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether the lab sandbox is running."""
        return self._sandbox is not None

    def _start(self) -> Sandbox:
        config = self.task.sandbox_config(
            grading=True, labels={**self._labels, "rdbench.role": "lab"}
        )
        started = time.monotonic()
        sandbox = self._factory(config)
        try:
            install_grader(sandbox, self.task)
            sandbox.exec(["mkdir", "-p", LAB_DIR], user="root", timeout=60).check("mkdir")
            sandbox.put_dir(str(self.task.lab_dir), LAB_DIR, user="root")
            for target, source in self.task.lab_from_workspace.items():  # [lab] from_workspace
                sandbox.write_file(f"{LAB_DIR}/{target}", source.read_bytes(), user="root")
            # root-only, whatever modes the task's files had
            sandbox.exec(["chmod", "-R", "go-rwx", GRADER_DIR], user="root",
                         timeout=60).check("chmod of the lab's files")
        except BaseException:
            sandbox.close()
            raise
        log.info("lab.start", task=self.task.id, seconds=round(time.monotonic() - started, 3))
        return sandbox

    def run(self, tool: LabTool, tool_input: dict[str, Any]) -> str:
        """Run `tool` with `tool_input` (already checked against its schema); its stdout.

        Raises ActionError (shown to the agent) when the command exits non-zero or times out,
        SandboxError when the lab sandbox fails.
        """
        with self._lock:
            if self._sandbox is None:
                self._sandbox = self._start()
            sandbox = self._sandbox
        result = sandbox.exec(
            tool.command, input=json.dumps(tool_input).encode("utf-8"), cwd=LAB_DIR,
            user="root", timeout=tool.timeout_s,
        )
        log.info("lab.call", tool=tool.name, returncode=result.returncode,
                 timed_out=result.timed_out)
        if result.timed_out:
            raise ActionError(
                f"{tool.name} timed out after {tool.timeout_s:g} s and was stopped; ask for "
                f"less work in one call.{_tail(result.stdout, result.stderr)}"
            )
        if result.returncode != 0:
            raise ActionError(
                f"{tool.name} failed (exit code {result.returncode})."
                f"{_tail(result.stdout, result.stderr)}"
            )
        if result.truncated:
            return f"{result.stdout}\n[output was truncated at the sandbox's cap]"
        return result.stdout or f"({tool.name} printed nothing)"

    def close(self) -> None:
        """Remove the lab sandbox, if it started; safe to call more than once."""
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            try:
                sandbox.close()
            except SandboxError as error:
                log.warning("lab.close_failed", error=str(error))


def _tail(stdout: str, stderr: str) -> str:
    """The end of a failed call's output, as the agent reads it."""
    text = "\n".join(part for part in (stdout.strip(), stderr.strip()) if part)
    if not text:
        return ""
    if len(text) > MAX_ERROR_CHARS:
        text = "..." + text[-MAX_ERROR_CHARS:]
    return f"\n{text}"
