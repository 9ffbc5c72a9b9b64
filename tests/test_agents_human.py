"""The human agent's parts that need no sandbox: the pump between a person's terminal and a
terminal (here a program on a real host pseudo-terminal), and the briefing.

A whole human episode, in both sandboxes, is driven through tmux in test_human_terminal.py."""

from __future__ import annotations

import io
import os
import select
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import TOY_TASK

from rdbench.agents import AgentError, TaskInfo, make_agent
from rdbench.agents.base import TerminalAccess
from rdbench.agents.human import briefing
from rdbench.agents.terminal_session import SessionEnd, run_session
from rdbench.env import RDEnv
from rdbench.episode import _terminal_access
from rdbench.sandbox.terminal import PtyTerminal, pty_size, set_pty_size
from rdbench.task import load_task
from rdbench.tools import tool_definitions

# Says when it is interrupted (Ctrl-C reaches it as SIGINT through its own terminal), echoes
# what it reads, and ends on "bye".
PROGRAM = """\
import signal, sys
signal.signal(signal.SIGINT, lambda *_: print("INTERRUPTED", flush=True))
print("READY", flush=True)
for line in sys.stdin:
    print("GOT", line.strip(), flush=True)
    if line.strip() == "bye":
        sys.exit(7)
"""


def local_terminal(code: str) -> PtyTerminal:
    """A Python program on a host pseudo-terminal (its controlling terminal)."""
    master, slave = os.openpty()
    process = subprocess.Popen(["setsid", "--ctty", "python3", "-c", code],
                               stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    return PtyTerminal(master, process)


class PersonAtTerminal:
    """The person's side: a pseudo-terminal whose slave end the session reads and writes,
    and whose master end this test types into and reads the screen from."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        set_pty_size(self.slave, 33, 99)
        self.screen = b""
        self.settings = termios.tcgetattr(self.slave)

    def expect(self, text: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on the screen: {self.screen[-500:]!r}")
            if select.select([self.master], [], [], left)[0]:
                self.screen += os.read(self.master, 4096)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def person() -> Iterator[PersonAtTerminal]:
    person = PersonAtTerminal()
    yield person
    person.close()


def in_thread(terminal: PtyTerminal, person: PersonAtTerminal, **options: object,
              ) -> tuple[threading.Thread, list[SessionEnd]]:  # fmt: skip
    ends: list[SessionEnd] = []
    options.setdefault("time_left", lambda: 60.0)
    thread = threading.Thread(target=lambda: ends.append(run_session(
        terminal, stdin_fd=person.slave, stdout_fd=person.slave, **options)))  # type: ignore[arg-type]
    thread.start()
    return thread, ends


def test_keys_reach_the_program_raw_and_ctrl_c_interrupts_only_it(
    person: PersonAtTerminal,
) -> None:
    terminal = local_terminal(PROGRAM)
    seen: list[tuple[float, bytes]] = []
    thread, ends = in_thread(terminal, person, on_output=lambda t, chunk: seen.append((t, chunk)))
    person.expect(b"READY")
    raw = termios.tcgetattr(person.slave)
    assert not raw[3] & termios.ISIG and not raw[3] & termios.ICANON  # no SIGINT from it
    person.type(b"\x03")  # Ctrl-C: a byte for the program's terminal
    person.expect(b"INTERRUPTED")
    person.type(b"hello\r")
    person.expect(b"GOT hello")
    assert terminal.wait(timeout=0) is None  # interrupted, still running
    person.type(b"bye\r")
    thread.join(10)
    assert ends == [SessionEnd(ended="exit", exit_code=7, seconds=ends[0].seconds)]
    assert termios.tcgetattr(person.slave) == person.settings  # put back
    assert b"GOT hello" in b"".join(chunk for _, chunk in seen)  # the recorder's hook
    times = [t for t, _ in seen]
    assert times == sorted(times) and times[0] >= 0


def test_a_failing_recorder_never_ends_the_session(person: PersonAtTerminal) -> None:
    calls: list[bytes] = []

    def recorder(seconds: float, chunk: bytes) -> None:
        calls.append(chunk)
        raise OSError("the disk is full")

    terminal = local_terminal(PROGRAM)
    thread, ends = in_thread(terminal, person, on_output=recorder)
    person.expect(b"READY")
    person.type(b"bye\r")
    person.expect(b"GOT bye")  # still shown to the person
    thread.join(10)
    assert ends[0].ended == "exit" and ends[0].exit_code == 7
    assert len(calls) == 1  # dropped after it failed


def test_a_long_paste_never_stalls_the_session(person: PersonAtTerminal) -> None:
    terminal = local_terminal("import sys\nfor line in sys.stdin: print(line.upper(), end='')")
    thread, _ = in_thread(terminal, person)
    paste = b"".join(b"line %05d of a long paste into a program\r" % n for n in range(5000))
    writer = threading.Thread(target=lambda: person.type(paste + b"the end\r"))
    writer.start()  # the person's terminal takes it in pieces, as the session reads them
    person.expect(b"THE END", timeout=60)
    writer.join(10)
    terminal.close()
    thread.join(10)
    assert b"LINE 04999 OF A LONG PASTE" in person.screen


def test_the_persons_terminal_size_is_followed(person: PersonAtTerminal) -> None:
    terminal = local_terminal(
        "import os, sys, signal, time\n"
        "signal.signal(signal.SIGWINCH, lambda *_: print('SIZE', *os.get_terminal_size(0),"
        " flush=True))\n"
        "print('SIZE', *os.get_terminal_size(0), flush=True)\n"
        "time.sleep(30)\n")
    thread, _ = in_thread(terminal, person)
    person.expect(b"SIZE 99 33")
    set_pty_size(person.slave, 50, 140)
    person.expect(b"SIZE 140 50")
    assert pty_size(terminal.fileno()) == (50, 140)
    terminal.close()
    thread.join(10)
    assert not thread.is_alive()


def test_time_running_out_ends_the_program(person: PersonAtTerminal) -> None:
    terminal = local_terminal("import time; print('READY', flush=True); time.sleep(60)")
    deadline = time.monotonic() + 1.0
    thread, ends = in_thread(terminal, person, time_left=lambda: deadline - time.monotonic())
    person.expect(b"READY")
    thread.join(10)
    (end,) = ends
    assert end.ended == "time" and 0.9 <= end.seconds < 5
    assert terminal.wait(timeout=0) is not None  # killed
    assert termios.tcgetattr(person.slave) == person.settings


def test_end_of_the_persons_input_ends_the_session() -> None:
    terminal = local_terminal("import time; time.sleep(60)")
    read_end, write_end = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    os.close(write_end)  # the person's terminal is gone: end of input at once
    try:
        end = run_session(terminal, time_left=lambda: 60.0, stdin_fd=read_end, stdout_fd=out)
    finally:
        os.close(read_end)
        os.close(out)
    assert end.ended == "closed"
    assert terminal.wait(timeout=0) is not None


def human_info(tmp_path: Path) -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(["bash", "submit"]),
                    {"steps": 20, "time_s": 1800})


def test_briefing_names_the_shell_time_and_commands_not_the_tools(tmp_path: Path) -> None:
    text = briefing(human_info(tmp_path))
    assert "Make `answer.py` print a bigger number" in text
    assert "30 minutes" in text and "exit" in text
    assert "score tool" not in text and "call submit" not in text.lower()
    for command in ("rdbench-score", "rdbench-submit", "rdbench-status", "rdbench-help"):
        assert f"  {command}  " in text


def test_human_agent_without_a_terminal_says_what_is_missing(tmp_path: Path) -> None:
    agent = make_agent("human")
    agent._out = io.StringIO()  # type: ignore[attr-defined]
    agent.reset(human_info(tmp_path), "the env's briefing")
    with pytest.raises(AgentError, match="no terminal into its sandbox"):
        agent.act("the env's briefing")


def test_human_agent_without_a_real_terminal_says_so(tmp_path: Path) -> None:
    agent = make_agent("human")
    agent._in, agent._out = io.StringIO(), io.StringIO()  # type: ignore[attr-defined]
    info = replace(human_info(tmp_path), terminal=TerminalAccess(
        open=lambda *args, **options: pytest.fail("no terminal may open"),
        time_left=lambda: 60.0))
    agent.reset(info, "the env's briefing")
    with pytest.raises(AgentError, match="needs the person's terminal"):
        agent.act("the env's briefing")


def test_only_an_agent_of_a_person_is_given_a_terminal() -> None:
    env = RDEnv(load_task(TOY_TASK))
    try:
        assert _terminal_access(make_agent("null"), env) is None
        access = _terminal_access(make_agent("human"), env)
        assert access is not None
        assert access.time_left() == 600.0  # not started: the whole budget (toy task: 600 s)
        with pytest.raises(RuntimeError, match="call reset"):
            access.open(["bash"])
    finally:
        env.close()
