"""human: a person works on the task in a real terminal inside the sandbox; this is how human
baselines are recorded.

The person is briefed (the task's instructions, the working time, how to finish), then gets
an interactive bash in the episode's sandbox, as the agent user in its home, with the same
walls and limits as an AI agent's commands (TaskInfo.terminal, rdbench/sandbox/terminal.py).
Their keys go there raw (rdbench/agents/terminal_session.py): editors, REPLs, job control and
Ctrl-C work as in any terminal, and Ctrl-C interrupts the command, never the episode. The
prompt shows the working time left, from the deadline the shell is given (RDBENCH_DEADLINE),
or from DEADLINE_FILE once something that paused the working-time clock wrote a later one.

The shell has the episode's channel to the runner (rdbench/human_channel.py): rdbench-score,
rdbench-submit, rdbench-status and rdbench-help on its PATH (the briefing names them); a
score asked there is a step of the env (rdbench/human_desk.py).

A human episode is limited by working time (the task's time budget, or `rdbench run
--max-time`), not by steps: the whole session is one action of the env (and each
rdbench-score one more). How it maps:
- the person leaves the shell (`exit`, Ctrl-D), runs `rdbench-submit` (the session is then
  closed), or their terminal goes away: the agent sends `submit`; the episode ends
  terminated and the workspace is graded, its seconds shown on the person's screen.
- the working time runs out: the shell is closed and the agent sends one no-op command
  (NO_OP, which runs `true`); the env then finds its time budget spent and ends the episode
  truncated (limit: time), graded as for any agent.
The session is recorded as `scaffold` events (`terminal_open`, then `terminal_closed` with how
it ended, its exit code and its length in seconds), and whole, from the briefing on, as an
asciinema v2 cast (rdbench.cast) where the episode asks for one (TerminalAccess.cast): what
the screen showed, and what was typed only where the person opted in (`record_keys`:
`rdbench run --agent 'human record_keys=true'`). `on_output`, when set, receives every chunk
of the session's output with its time (for another recorder).

A person whose terminal closes mid-episode (a closed window, a killed tmux session) left: the
workspace is graded as they left it, and `ended_by` says "person_left". Nothing is written to
their terminal once it is gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

import structlog

from rdbench.agents.base import AgentError, TaskInfo, Usage, agent
from rdbench.agents.grading_ticker import GradingTicker
from rdbench.agents.terminal_session import SessionEnd, SessionHook, run_session
from rdbench.cast import CastWriter
from rdbench.sandbox.base import AGENT_HOME, BASE_ENV, CHANNEL_DIR
from rdbench.sandbox.terminal import pty_size

log = structlog.get_logger()

SHELL = ["/bin/bash", "--norc", "-i"]
SUBMIT: dict[str, Any] = {"tool": "submit", "input": {}}
NO_OP: dict[str, Any] = {"tool": "bash", "input": {"command": "true  # working time is up"}}
# Bash computes the time left before each prompt, from the deadline it was given (epoch s),
# or the one in DEADLINE_FILE once that exists: whoever stops the working-time clock for a
# while (a validation grading) writes the moved deadline there, as root.
DEADLINE_FILE = "/tmp/.rdbench-deadline"
# Terminal types the image's terminfo knows (Debian's ncurses-base); another is shown as
# xterm-256color.
KNOWN_TERMS = frozenset({
    "ansi", "dumb", "linux", "rxvt-unicode", "rxvt-unicode-256color", "screen",
    "screen-256color", "tmux", "tmux-256color", "vt100", "vt220", "xterm", "xterm-256color",
    "xterm-color",
})
PROMPT_COMMAND = (
    "__rdbench_d=${RDBENCH_DEADLINE:-0}; "
    '[[ -r $RDBENCH_DEADLINE_FILE ]] && read -r __rdbench_d < "$RDBENCH_DEADLINE_FILE"; '
    "__rdbench_s=$(( ${__rdbench_d:-0} - EPOCHSECONDS )); "
    "(( __rdbench_s < 0 )) && __rdbench_s=0; "
    "printf -v RDBENCH_LEFT '%d:%02d:%02d' $(( __rdbench_s / 3600 )) "
    "$(( __rdbench_s % 3600 / 60 )) $(( __rdbench_s % 60 ))"
)
PS1 = r"[${RDBENCH_LEFT} left] \w\$ "
BRIEFING = """\
{instructions}

----------------------------------------------------------------------------------------
You work in a terminal inside the task's sandbox: bash, as the user `agent`, in your home
{home}, which is the workspace that gets graded. Editors, REPLs, job control and Ctrl-C
work as in any terminal (Ctrl-C interrupts the running command, not the episode).
Working time: {working_time}. The prompt shows the time left; when it runs out the shell is
closed and your workspace is graded.
Commands in that shell:
  rdbench-score   grade your workspace on the validation split and show the score
                  (working time stops while it grades)
  rdbench-submit  finish: your workspace is graded on the hidden test split (asks first)
  rdbench-status  working time left, your scores so far
  rdbench-help    these commands
Leaving the shell (`exit` or Ctrl-D) finishes too, as rdbench-submit does.
----------------------------------------------------------------------------------------
"""


@agent("human")
class HumanAgent:
    """A person at a terminal: an interactive shell in the sandbox until they leave it or
    the working time runs out."""

    name = "human"
    uses_terminal = True  # the episode gives it TaskInfo.terminal

    def __init__(self, record_keys: bool = False) -> None:
        self._in: TextIO = sys.stdin
        self._out: TextIO = sys.stdout
        self._info: TaskInfo | None = None
        self.record_keys = record_keys  # the person opted in to their keys being recorded
        self.session: SessionEnd | None = None  # how the last session ended
        self.on_output: SessionHook | None = None  # a recorder's hook on the screen's bytes
        self._ticker = GradingTicker()  # the final grading's seconds, on the person's screen
        self._cast: CastWriter | None = None

    @property
    def ended_by(self) -> Literal["person_left"] | None:
        """"person_left" when the person's terminal closed mid-episode, else None."""
        return "person_left" if self.session is not None and self.session.ended == "closed" \
            else None

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Brief the person: the task's instructions, the working time, how to finish (and
        start the session's recording with it, where the episode asks for one)."""
        self._info = info
        self.session = None
        self._start_cast(info)
        self._say(briefing(info))

    def act(self, observation: str) -> dict[str, Any]:
        """Run the person's session in the sandbox's terminal to its end; then submit (they
        left) or send NO_OP (their time is up, which the env then finds)."""
        if self._info is None:
            raise AgentError("act() before reset(): the human agent has no task yet")
        if self.session is not None:  # the env went on after the session: nothing is left
            return SUBMIT
        access = self._info.terminal
        if access is None:
            raise AgentError("This episode gives no terminal into its sandbox, which the "
                             "human agent needs; run it with `rdbench run --agent human`")
        left = access.time_left()
        if left <= 0:
            self.session = SessionEnd(ended="time", exit_code=None, seconds=0.0)
            return NO_OP
        deadline = int(time.time() + left)
        try:
            stdin_fd, stdout_fd = self._in.fileno(), self._out.fileno()
        except (OSError, ValueError) as error:  # io.UnsupportedOperation among them
            raise AgentError(f"The human agent needs the person's terminal as its stdin and "
                             f"stdout, which have no file descriptor here ({error})") from error
        size = pty_size(stdin_fd) or pty_size(stdout_fd) or (24, 80)
        terminal = access.open(SHELL, env=shell_env(deadline, os.environ.get("TERM")),
                               size=size, timeout=left)  # fmt: skip
        opened: dict[str, Any] = {"time_left_s": round(left, 3), "rows": size[0],
                                  "cols": size[1]}
        if self._cast is not None:
            opened.update(cast=self._cast.path.name, keys_recorded=self.record_keys)
            if size != self._cast.size:
                self._cast.resize(*size)
        self._record("terminal_open", f"an interactive shell, {left:.0f} s of working time "
                     "left", opened)

        def session_left() -> float:  # none once the person submitted from the shell
            return 0.0 if access.submitted() else access.time_left()

        cast = self._cast
        end = self.session = run_session(
            terminal, time_left=session_left, stdin_fd=stdin_fd, stdout_fd=stdout_fd,
            on_output=_tee(self.on_output, None if cast is None
                           else _screen_recorder(cast, stdout_fd, size)),
            on_input=_hook(cast.input) if cast is not None and self.record_keys else None,
        )
        ended = "submit" if end.ended == "time" and access.submitted() else end.ended
        self._record("terminal_closed", _ending_text(end, ended),
                     {"ended": ended, "exit_code": end.exit_code, "seconds": end.seconds})
        self._say({
            "time": "\n[rdbench] Working time is up: the shell was closed. Grading your "
                    "workspace on the hidden test split...\n",
            "submit": "\n[rdbench] You submitted (rdbench-submit): grading your workspace on "
                      "the hidden test split...\n",
            "closed": "\n[rdbench] Your terminal closed: you left. Grading your workspace as "
                      "you left it, on the hidden test split...\n",
        }.get(ended, "\n[rdbench] The shell ended: grading your workspace on the hidden test "
                     "split...\n"))
        self._stop_cast()
        self._ticker.start(self._out)
        return NO_OP if ended == "time" else SUBMIT

    def end(self, reason: str) -> None:
        """The episode is over and graded: stop showing the grading's progress."""
        self._ticker.stop()

    def close(self) -> None:
        """Stop showing the grading's progress and end the session's recording (however the
        episode ended)."""
        self._ticker.stop()
        self._stop_cast()

    def usage(self) -> Usage:
        """A person uses no model."""
        return Usage()

    def _record(self, action: str, text: str, details: dict[str, Any]) -> None:
        assert self._info is not None
        self._info.record("scaffold", {"action": action, "text": text, "details": details})

    def _say(self, text: str) -> None:
        """Show `text` to the person (and record it); nothing when their terminal is gone."""
        if self._cast is not None:
            try:
                self._cast.output(text.replace("\n", "\r\n").encode())
            except OSError as error:  # a recording that fails never fails the episode
                log.warning("human.cast_failed", error=str(error))
                with contextlib.suppress(OSError):
                    self._cast.close()
                self._cast = None
        with contextlib.suppress(OSError, ValueError):  # EIO/EPIPE: it closed; or stdout did
            self._out.write(text)
            self._out.flush()

    def _start_cast(self, info: TaskInfo) -> None:
        """Start recording to the file the episode names (TerminalAccess.cast), if any."""
        self._stop_cast()
        path = info.terminal.cast if info.terminal is not None else None
        if path is None:
            return
        rows, cols = _screen_size(self._out)
        self._cast = CastWriter(path, width=cols, height=rows,
                                title=f"rdbench {info.task.id}: a person's terminal session",
                                env={"TERM": shell_env(0, os.environ.get("TERM"))["TERM"],
                                     "SHELL": SHELL[0]})  # fmt: skip

    def _stop_cast(self) -> None:
        if self._cast is not None:
            self._cast.close()
            self._cast = None


def briefing(info: TaskInfo) -> str:
    """What the person reads before their shell opens."""
    time_s = float(info.budget.get("time_s") or 0)
    return BRIEFING.format(instructions=info.instructions.strip(), home=AGENT_HOME,
                           working_time=_duration(time_s))  # fmt: skip


def shell_env(deadline: int, term: str | None = None) -> dict[str, str]:
    """The environment of the person's shell: a prompt showing the working time left until
    `deadline` (epoch seconds; DEADLINE_FILE, once written, moves it), the person's terminal
    type `term` where the image knows it, a history kept out of the workspace, and the
    channel's commands (rdbench-score, ...) on the PATH."""
    return {"RDBENCH_DEADLINE": str(deadline), "RDBENCH_DEADLINE_FILE": DEADLINE_FILE,
            "PATH": f"{BASE_ENV['PATH']}:{CHANNEL_DIR}/bin",  # rdbench-score and the others
            "PROMPT_COMMAND": PROMPT_COMMAND, "PS1": PS1, "HISTFILE": "/tmp/.bash_history",
            "TERM": term if term in KNOWN_TERMS else "xterm-256color"}  # fmt: skip


def _tee(*hooks: SessionHook | None) -> SessionHook | None:
    """One hook calling each of `hooks` that is set (None when none is)."""
    chosen = [hook for hook in hooks if hook is not None]
    if not chosen:
        return None

    def tee(seconds: float, data: bytes) -> None:
        for hook in chosen:
            hook(seconds, data)

    return tee


def _hook(record: Callable[[bytes], None]) -> SessionHook:
    """A session hook giving each chunk to `record` (a cast, which keeps its own clock:
    its time 0 is the briefing)."""

    def hook(seconds: float, data: bytes) -> None:
        record(data)

    return hook


def _screen_recorder(cast: CastWriter, fd: int, size: tuple[int, int]) -> SessionHook:
    """A session hook recording each chunk of the screen to `cast`, after a resize event
    when the person's terminal `fd` changed its size since (the program redraws after a
    resize, so the size is looked at before each chunk is recorded)."""
    shown = size

    def hook(seconds: float, data: bytes) -> None:
        nonlocal shown
        now = pty_size(fd)
        if now is not None and now != shown:
            shown = now
            cast.resize(*now)
        cast.output(data)

    return hook


def _screen_size(out: TextIO) -> tuple[int, int]:
    """The rows and columns of the person's terminal (24 x 80 when it has no size)."""
    try:
        return pty_size(out.fileno()) or (24, 80)
    except (OSError, ValueError):  # no file descriptor (io.UnsupportedOperation among them)
        return (24, 80)


def _ending_text(end: SessionEnd, ended: str) -> str:
    how = {"exit": f"the shell exited ({end.exit_code})", "time": "the working time was up",
           "closed": "the person's terminal closed: they left",
           "submit": "the person submitted (rdbench-submit)"}[ended]  # fmt: skip
    return f"terminal session over after {end.seconds:.0f} s: {how}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"
