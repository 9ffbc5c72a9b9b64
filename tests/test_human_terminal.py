"""`rdbench run --agent human` driven as a person would, through a real terminal (tmux): a
shell in the sandbox with a PTY on both backends, Ctrl-C that interrupts only the command,
REPLs, full-screen programs, the size followed, and an episode limited by working time."""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import missing
from helpers import BACKENDS, copy_toy_task

from rdbench.agents.human import DEADLINE_FILE, SHELL, shell_env
from rdbench.records import load_result
from rdbench.sandbox import Sandbox, SandboxConfig, make_sandbox
from rdbench.sandbox.terminal import Terminal, open_terminal
from rdbench.transcript import read_transcript

PROMPT = r"left\] ~\$ ?$"  # in the home (capture-pane drops trailing spaces)
ANY_PROMPT = r"left\] [^\n]*\$ ?$"
# A full-screen program: curses in raw mode, showing its screen size, taking keys one by one
# until `~`, then writing them to answer.py (what an editor does, without needing one).
FULL_SCREEN_EDITOR = """\
import curses

def main(screen):
    curses.raw()
    rows, cols = screen.getmaxyx()
    screen.addstr(0, 0, f"EDITING answer.py on a {rows}x{cols} screen")
    screen.refresh()
    typed = ""
    while (key := screen.getkey()) != "~":
        typed += key
        screen.addstr(1, 0, typed)
        screen.refresh()
    with open("answer.py", "w") as file:
        file.write(typed)

curses.wrapper(main)
"""


class Tmux:
    """One tmux session on its own server (its own socket), typed into with send-keys and
    read with capture-pane, as a person at a terminal would use rdbench."""

    def __init__(self, command: list[str], *, cwd: Path, rows: int = 40, cols: int = 120):
        if shutil.which("tmux") is None:
            missing("tmux is not installed (apt-get install tmux, or scripts/setup-host.sh)")
        self.socket = str(cwd / "tmux.sock")  # the test's own: nothing is left in /tmp
        line = " ".join(_quote(part) for part in command)
        self._tmux("new-session", "-d", "-s", "main", "-x", str(cols), "-y", str(rows),
                   "-c", str(cwd), f"{line}; echo RUN-EXIT=$?; sleep 120")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        """The pane's text with its scrollback, trailing blank lines dropped."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "main").rstrip()

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait until the screen matches `pattern` (multi-line); return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if re.search(pattern, screen, re.MULTILINE):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the screen:\n{screen[-3000:]}")
            time.sleep(0.1)

    def type(self, text: str, *, enter: bool = True) -> None:
        """Type `text` literally (and Enter)."""
        self._tmux("send-keys", "-t", "main", "-l", text)
        if enter:
            self.keys("Enter")

    def keys(self, *names: str) -> None:
        """Press keys by tmux's names (C-c, Enter, Escape)."""
        self._tmux("send-keys", "-t", "main", *names)

    def press_until(self, key: str, pattern: str, timeout: float = 15.0) -> str:
        """Press `key` (again each second: a key pressed before the command started is lost
        on the shell) until the screen matches `pattern`; return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            self.keys(key)
            try:
                return self.expect(pattern, timeout=1.0)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def run(self, command: str, then: str, timeout: float = 30.0) -> str:
        """Type `command` at the prompt and wait for `then` followed by the next prompt."""
        self.type(command)
        return self.expect(rf"{then}\n.*{ANY_PROMPT}", timeout)

    def resize(self, rows: int, cols: int) -> None:
        """Resize the window, as a person dragging their terminal's corner."""
        self._tmux("resize-window", "-t", "main", "-x", str(cols), "-y", str(rows))

    def kill(self) -> None:
        """End the tmux server and what runs in it."""
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _rdbench_run(task: Path, out: Path, backend: str, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from rdbench.cli import app; app()", "run", "--task",
            str(task), "--agent", "human", "--sandbox", backend, "--out", str(out), *extra]


@pytest.fixture
def toy_task_with_editor(tmp_path: Path) -> Path:
    """The toy task, its workspace holding the full-screen editor edit.py."""
    task = copy_toy_task(tmp_path / "tasks")
    (task / "workspace" / "edit.py").write_text(FULL_SCREEN_EDITOR)
    return task


def _ready(backend: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("sandbox_image")  # both: bwrap's files come from the image
    if backend == "bwrap":
        request.getfixturevalue("bwrap_rootfs")


@pytest.fixture
def sandbox(backend: str, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A small sandbox of each backend, labelled as this test's."""
    _ready(backend, request)
    config = SandboxConfig(cpus=1.0, memory_mb=512, disk_mb=256,
                           labels={"rdbench.test": f"terminal-{uuid.uuid4().hex[:8]}"})
    with make_sandbox(backend, config) as started:
        yield started


def _session_output(terminal: Terminal, typed: bytes, timeout: float = 30.0) -> str:
    """Type `typed` into `terminal` and read until it ends (the text ends with `exit`)."""
    terminal.write(typed)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.2)[0]:
            chunk = terminal.read()
            if not chunk:
                break
            output += chunk
        elif terminal.wait(timeout=0) is not None:
            break
    return output.decode(errors="replace").replace("\r\n", "\n")


# Identity, capabilities, no_new_privs, seccomp and rlimits (but CPU time, which follows
# each command's timeout), as a command and as a terminal's program see them.
WALLS = ("grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):'"
         " /proc/self/status; grep -v 'Max cpu time' /proc/self/limits")


def test_terminal_has_the_walls_and_limits_of_an_agents_commands(sandbox: Sandbox) -> None:
    command = sandbox.exec(["/bin/sh", "-c", WALLS])
    assert command.ok, command.stderr
    terminal = open_terminal(sandbox, ["/bin/sh", "-c", WALLS])
    try:
        shown = _session_output(terminal, b"")
        assert terminal.wait(timeout=10) == 0
    finally:
        terminal.close()
    assert shown.split() == command.stdout.split()
    assert "NoNewPrivs:\t1" in command.stdout and "CapEff:\t0000000000000000" in command.stdout


def test_closing_a_terminal_ends_everything_it_started(sandbox: Sandbox) -> None:
    terminal = open_terminal(sandbox, env={"PS1": "READY$ "})
    try:
        terminal.write(b"sleep 4321 & disown; echo started-$((40 + 2))\n")
        seen = b""
        deadline = time.monotonic() + 30
        while b"started-42" not in seen and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.2)[0]:
                seen += terminal.read()
        assert b"started-42" in seen
        assert sandbox.exec(["pgrep", "-f", "sleep 4321"]).returncode == 0
    finally:
        terminal.close()
    assert terminal.wait(timeout=10) is not None
    left = sandbox.exec(["pgrep", "-f", "sleep 4321"])
    assert left.returncode == 1, left.stdout  # none left
    assert sandbox.exec(["true"]).ok  # the sandbox itself goes on


def test_a_terminal_ends_when_its_sandbox_is_closed(sandbox: Sandbox) -> None:
    terminal = open_terminal(sandbox)
    try:
        assert select.select([terminal], [], [], 30)[0]  # the prompt
        sandbox.close()  # a run being stopped removes its sandboxes
        deadline = time.monotonic() + 30
        while terminal.read() and time.monotonic() < deadline:
            pass
        assert terminal.wait(timeout=10) is not None
    finally:
        terminal.close()


def _read_until(terminal: Terminal, pattern: str, timeout: float = 30.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen) and time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.2)[0]:
            seen += terminal.read().decode(errors="replace")
    assert re.search(pattern, seen), f"no {pattern!r} in {seen[-500:]!r}"
    return seen


def test_the_prompt_shows_the_time_left_and_follows_a_moved_deadline(
    sandbox: Sandbox,
) -> None:
    terminal = open_terminal(sandbox, SHELL,
                             env=shell_env(int(time.time()) + 125, "tmux-256color"))
    try:
        _read_until(terminal, r"\[0:02:0[45] left\] ~\$ $")
        terminal.write(b"echo $TERM\n")
        _read_until(terminal, r"tmux-256color\r\n")
        sandbox.write_file(DEADLINE_FILE, str(int(time.time()) + 3600), user="root")
        terminal.write(b"\n")
        _read_until(terminal, r"\[(0:59:5\d|1:00:00) left\] ~\$ $")
    finally:
        terminal.close()


def test_an_unknown_terminal_type_is_shown_as_xterm() -> None:
    assert shell_env(0, "my-own-term")["TERM"] == "xterm-256color"
    assert shell_env(0, None)["TERM"] == "xterm-256color"
    assert shell_env(0, "screen-256color")["TERM"] == "screen-256color"


def _only_episode(out: Path) -> Path:
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return folder


@pytest.mark.parametrize("backend", BACKENDS)
def test_person_works_in_a_real_terminal_scores_and_submits(
    backend: str, tmp_path: Path, toy_task_with_editor: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 16's session, end to end: a person edits with vi, uses python3, cds into a
    folder and back, interrupts sleep 30, scores and submits from the shell; the episode
    ends graded, with the session's cast and the timed score in the transcript."""
    _ready(backend, request)
    out = tmp_path / "runs"
    tmux = Tmux(_rdbench_run(toy_task_with_editor, out, backend), cwd=tmp_path)
    try:
        screen = tmux.expect(PROMPT, timeout=90)
        assert "Make `answer.py` print a bigger number" in screen
        assert "score tool" not in screen and "call submit" not in screen.lower()
        assert re.search(r"\[0:(09:\d\d|10:00) left\] ~\$ ?$", screen, re.MULTILINE)
        # cd into a folder and back: the shell keeps its working folder
        tmux.type("mkdir -p sub && cd sub")
        tmux.expect(r"left\] ~/sub\$ ?$")
        tmux.run("pwd", r"^/home/agent/sub")
        tmux.type("cd ..")
        tmux.run("pwd", r"^/home/agent")
        tmux.run("id -un", r"^agent")
        tmux.run("tty; stat -c %U $(tty)", r"^/dev/pts/\d+\nagent")  # its own, in the sandbox
        # an interactive python3
        tmux.type("python3")
        tmux.expect(r"^>>> ?$")
        tmux.type("2+3")
        tmux.expect(r"^>>> 2\+3\n5\n>>> ?$")
        tmux.type("exit()")
        tmux.expect(PROMPT)
        # Ctrl-C interrupts the running command, not the episode; the shell goes on
        tmux.type("sleep 30")
        tmux.expect(r"sleep 30$")
        started = time.monotonic()
        tmux.press_until("C-c", rf"sleep 30\n\^C\n.*{PROMPT}")
        assert time.monotonic() - started < 15
        tmux.run("echo still-here-$((6 * 7))", r"^still-here-42")
        # job control: Ctrl-Z stops the job, the shell takes it back
        tmux.type("sleep 31")
        tmux.expect(r"sleep 31$")
        tmux.press_until("C-z", rf"Stopped\s+sleep 31\n.*{PROMPT}")
        tmux.type("fg")
        tmux.expect(r"\$ fg\nsleep 31\s*$")
        tmux.press_until("C-c", rf"fg\nsleep 31\n\^C\n.*{PROMPT}")
        tmux.run("jobs | wc -l", r"^0")
        # a full-screen program in raw mode: it sees the terminal's size and every key
        tmux.type("python3 edit.py")
        tmux.expect(r"EDITING answer.py on a 40x120 screen")
        tmux.type("print(4)", enter=False)
        tmux.expect(r"^print\(4\)")
        tmux.type("~", enter=False)
        tmux.expect(PROMPT)
        tmux.run("cat answer.py; echo", r"^print\(4\)")
        # an editor: vi (the image's vim-tiny)
        tmux.type("vi notes.txt")
        tmux.expect(r"^~", timeout=10)  # the empty buffer's lines
        tmux.keys("i")
        tmux.type("hello from vi", enter=False)
        tmux.keys("Escape")
        tmux.type(":wq")
        tmux.run("cat notes.txt", r"^hello from vi")
        # the terminal's size is followed
        tmux.resize(30, 100)
        tmux.run("stty size", r"^30 100")
        # a validation score from the shell, then submit
        tmux.run("rdbench-score", r"Validation score: 4\.50 .*", timeout=60)
        tmux.type("rdbench-submit")
        tmux.expect(r"for final grading\? \[y/N\] ?$")
        tmux.type("y")
        tmux.expect(r"RUN-EXIT=0", timeout=90)
    finally:
        tmux.kill()
    folder = _only_episode(out)
    result = load_result(folder)
    assert result.agent == "human" and result.outcome == "submitted"
    assert result.sandbox == backend
    assert result.raw_score == 4.0 and result.normalized_score == pytest.approx(0.75)
    assert result.steps == 2  # the score, then the whole session as one action
    events = read_transcript(folder)
    sessions = [event for event in events
                if event["type"] == "scaffold" and event["action"].startswith("terminal_")]
    assert [event["action"] for event in sessions] == ["terminal_open", "terminal_closed"]
    assert sessions[1]["details"]["ended"] == "submit"
    assert sessions[1]["details"]["seconds"] > 1
    (score,) = [event for event in events if event["type"] == "score"]
    assert score["t"] and score["normalized_score"] == pytest.approx(0.875)
    assert 1 < score["working_s"] <= score["elapsed_working_s"]
    assert result.recording == "session.cast"
    cast = (folder / "session.cast").read_text(encoding="utf-8").splitlines()
    assert json.loads(cast[0])["version"] == 2
    shown = "".join(event[2] for event in map(json.loads, cast[1:]) if event[1] == "o")
    for seen in ("hello from vi", ">>> 2+3", "still-here-42", "Validation score: 4.50"):
        assert seen in shown, seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_working_time_running_out_closes_the_shell_and_grades(
    backend: str, tmp_path: Path, toy_task_with_editor: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    out = tmp_path / "runs"
    tmux = Tmux(_rdbench_run(toy_task_with_editor, out, backend, "--max-time", "6"),
                cwd=tmp_path)
    try:
        tmux.expect(r"\[0:00:0\d left\] ~\$ ?$", timeout=90)
        tmux.type("echo 'print(2)' > answer.py")
        tmux.expect(PROMPT)
        tmux.type("sleep 60")  # still running when the time is up
        tmux.expect(r"Working time is up", timeout=30)
        tmux.expect(r"RUN-EXIT=0", timeout=90)
    finally:
        tmux.kill()
    result = load_result(_only_episode(out))
    assert result.outcome == "limit" and result.limit_hit == "time"
    assert result.raw_score == 2.0
    assert 5.5 <= result.working_s < 30
    events = read_transcript(_only_episode(out))
    closed = [event for event in events if event.get("action") == "terminal_closed"]
    assert closed[0]["details"]["ended"] == "time"
    assert json.loads((_only_episode(out) / "result.json").read_text())["truncated"] is True
