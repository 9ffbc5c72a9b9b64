"""human: a person works on the task from a terminal; this is how human baselines are recorded.

Every line typed at the prompt runs in the episode's sandbox, through the same bash tool an
AI agent uses (the working directory is kept between lines), so the record is the same
transcript. Lines starting with `:` are rdbench's own commands: `:instructions`, `:score`,
`:submit`, `:edit PATH` (in $EDITOR on this machine), `:notepad TEXT`, `:status`, `:help`.
Every score the env gives is timestamped in the transcript (`t`, and `elapsed_working_s`),
so baseline curves (score against time spent) can be drawn from it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rdbench.agents import observed
from rdbench.agents.base import TaskInfo, Usage, agent
from rdbench.tools import AGENT_HOME

HELP = """\
Type shell commands: they run in the task's sandbox (your home is the workspace).
rdbench commands:
  :instructions    show the task's instructions again
  :score           grade the workspace on the validation split (timestamped)
  :submit          end the episode; the workspace is graded on the hidden test split
  :edit PATH       edit a file of the sandbox in $EDITOR (here: {editor})
  :notepad TEXT    keep a note in the notepad tool (when the run has it)
  :status          steps and time used, scores so far
  :help            this help
Ctrl-D submits too. Interactive programs (vim, top, a REPL) do not work at this prompt;
use :edit for files."""
CD_LINE = re.compile(r"^cd(?:\s+(.*))?$")


@agent("human")
class HumanAgent:
    """A person at a terminal: a shell in the sandbox plus :score, :submit, :edit, ..."""

    name = "human"

    def __init__(self, *, editor: str | None = None, confirm_submit: bool = True):
        self.editor = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        self.confirm_submit = confirm_submit
        self._in: TextIO = sys.stdin
        self._out: TextIO = sys.stdout
        self._info: TaskInfo | None = None
        self._briefing = ""
        self._cwd = AGENT_HOME
        self._steps = 0
        self._started = 0.0
        self._scores: list[str] = []
        self._then: Callable[[str], dict[str, Any] | None] | None = None
        self._first = True

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Show the briefing and the commands."""
        self._info = info
        self._briefing = observation
        self._cwd = AGENT_HOME
        self._steps = 0
        self._started = time.monotonic()
        self._scores = []
        self._then = None
        self._first = True
        self._say(f"{observation}\n\n{HELP.format(editor=self.editor)}\n")

    def act(self, observation: str) -> dict[str, Any]:
        """Show what the last command did, then read lines until one makes an action."""
        if not self._first:
            follow_up, self._then = self._then, None
            if follow_up is None:
                self._show(observation)
            elif (action := follow_up(observation)) is not None:
                return self._count(action)
        self._first = False
        while True:
            line = self._read_line()
            if line is None:
                self._say("\n(end of input: submitting)\n")
                return self._count({"tool": "submit", "input": {}})
            action = self._command(line.strip())
            if action is not None:
                return self._count(action)

    def usage(self) -> Usage:
        """A person uses no model."""
        return Usage()

    # --- the prompt ------------------------------------------------------------------

    def _command(self, line: str) -> dict[str, Any] | None:
        if not line:
            return None
        if not line.startswith(":"):
            return self._shell(line)
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("help", "h", "?"):
            self._say(HELP.format(editor=self.editor) + "\n")
        elif name in ("instructions", "i"):
            self._say(self._briefing + "\n")
        elif name == "status":
            self._say(self._status() + "\n")
        elif name == "score":
            if self._has_tool("score"):
                self._then = self._after_score
                return {"tool": "score", "input": {}}
        elif name == "submit":
            if not self.confirm_submit or self._ask("Submit and end the episode? [y/N] "):
                return {"tool": "submit", "input": {}}
        elif name == "edit" and rest:
            self._then = lambda text: self._after_read(rest, text)
            return {"tool": "read_file", "input": {"path": self._path(rest)}}
        elif name == "notepad" and rest:
            if self._has_tool("notepad"):
                return {"tool": "notepad", "input": {"content": rest}}
        else:
            self._say(f"Unknown command {line!r}; :help lists them.\n")
        return None

    def _shell(self, line: str) -> dict[str, Any]:
        cd = CD_LINE.match(line)
        prefix = "" if self._cwd == AGENT_HOME else f"cd {shlex.quote(self._cwd)} && "
        if cd:
            self._then = self._after_cd
            target = cd.group(1) or "~"
            return {"tool": "bash", "input": {"command": f"{prefix}cd {target} && pwd"}}
        return {"tool": "bash", "input": {"command": prefix + line}}

    def _after_cd(self, observation: str) -> None:
        printed = observed.stdout_of(observation).strip().splitlines()
        if observed.exit_code(observation) == 0 and printed and printed[-1].startswith("/"):
            self._cwd = printed[-1]
        else:
            self._show(observation)
        return None

    def _after_score(self, observation: str) -> None:
        elapsed = time.monotonic() - self._started
        self._scores.append(f"{_clock(elapsed)}  {observation.splitlines()[0]}")
        self._show(observation)

    def _after_read(self, path: str, observation: str) -> dict[str, Any] | None:
        if observed.is_error(observation):
            if "No such file" not in observation:
                self._show(observation)
                return None
            observation = ""  # a new file
        if observed.truncated(observation):
            self._say(f"{path} is too large to edit here; change it with shell commands.\n")
            return None
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / Path(path).name
            local.write_text(observation, encoding="utf-8")
            try:
                subprocess.run([*shlex.split(self.editor), str(local)], check=False)
            except OSError as error:
                self._say(f"Cannot run the editor {self.editor!r}: {error}\n")
                return None
            edited = local.read_text(encoding="utf-8")
        if edited == observation:
            self._say(f"{path}: no change.\n")
            return None
        return {"tool": "write_file", "input": {"path": self._path(path), "content": edited}}

    # --- helpers ---------------------------------------------------------------------

    def _count(self, action: dict[str, Any]) -> dict[str, Any]:
        self._steps += 1
        return action

    def _show(self, observation: str) -> None:
        self._say(observation if observation.endswith("\n") else observation + "\n")

    def _has_tool(self, name: str) -> bool:
        tools = {tool["name"] for tool in self._info.tools} if self._info else set()
        if name not in tools:
            self._say(f"This run has no {name} tool.\n")
        return name in tools

    def _path(self, path: str) -> str:
        return path if path.startswith("/") else f"{self._cwd}/{path}"

    def _status(self) -> str:
        budget = self._info.budget if self._info else {}
        elapsed = time.monotonic() - self._started
        lines = [f"steps {self._steps}/{budget.get('steps', '?')}, time "
                 f"{_clock(elapsed)} of {_clock(float(budget.get('time_s') or 0))}"]
        lines += self._scores or ["no scores yet"]
        return "\n".join(lines)

    def _prompt(self) -> str:
        budget = self._info.budget if self._info else {}
        where = "~" + self._cwd[len(AGENT_HOME):] if self._cwd.startswith(AGENT_HOME) else self._cwd
        elapsed = _clock(time.monotonic() - self._started)
        return f"[{self._steps}/{budget.get('steps', '?')} {elapsed}] {where}$ "

    def _read_line(self, prompt: str | None = None) -> str | None:
        while True:
            try:
                if self._in is sys.stdin and self._out is sys.stdout:
                    return input(prompt or self._prompt())
                self._say(prompt or self._prompt())
                line = self._in.readline()
                return line.rstrip("\n") if line else None
            except EOFError:
                return None
            except KeyboardInterrupt:
                self._say("\n(interrupted; :submit ends the episode)\n")

    def _ask(self, question: str) -> bool:
        answer = self._read_line(question)
        return answer is not None and answer.strip().lower() in ("y", "yes")

    def _say(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
