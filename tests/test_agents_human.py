"""The human adapter, driven as a person would: `rdbench run --agent human` in a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TOY_TASK

from rdbench.agents import TaskInfo, make_agent
from rdbench.agents.human import HumanAgent
from rdbench.records import load_result
from rdbench.task import load_task
from rdbench.tools import tool_definitions
from rdbench.transcript import read_transcript


class Terminal:
    """A program running in a pseudo-terminal, read and typed into like a person would."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True)
        os.close(slave)
        self.screen = ""

    def expect(self, pattern: str, timeout: float = 90) -> str:
        """Wait until the output matches `pattern`; return the output up to the match."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.screen)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} on the screen:\n{self.screen[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the program ended and closed the terminal
                    data = b""
                if not data and self.process.poll() is not None:
                    raise AssertionError(f"the program ended:\n{self.screen[-3000:]}")
                self.screen += data.decode("utf-8", "replace")
        seen, self.screen = self.screen[: match.end()], self.screen[match.end():]
        return seen

    def type(self, line: str) -> None:
        """Type a line and press enter."""
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> None:
        """Close the terminal, killing the program if it is still running."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.master)


@pytest.mark.docker
def test_person_works_in_the_sandbox_scores_and_submits(
    tmp_path: Path, sandbox_image: str
) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/print(1)/print(4)/' \"$1\"\n")
    editor.chmod(0o755)
    out = tmp_path / "runs"
    env = {**os.environ, "EDITOR": str(editor), "TERM": "dumb", "COLUMNS": "200"}
    terminal = Terminal([sys.executable, "-c", "from rdbench.cli import app; app()", "run",
                         "--task", str(TOY_TASK), "--agent", "human", "--out", str(out)], env)
    try:
        terminal.expect(r"Make `answer.py` print a bigger number")
        terminal.expect(r"~\$ ")
        terminal.type("cat answer.py")
        terminal.expect(r"print\(1\)")
        terminal.type("mkdir -p sub")
        terminal.expect(r"~\$ ")
        terminal.type("cd sub")
        terminal.expect(r"~/sub\$ ")
        terminal.type("pwd")
        terminal.expect(r"/home/agent/sub")
        terminal.type("cd ..")
        terminal.expect(r"\] ~\$ ")
        terminal.type(":edit answer.py")
        terminal.expect(r"Wrote \d+ bytes to /home/agent/answer.py")
        terminal.type(":score")
        terminal.expect(r"Validation score: 4\.5")
        terminal.type(":status")
        terminal.expect(r"steps 8/20")
        terminal.type(":submit")
        terminal.expect(r"\[y/N\] ")
        terminal.type("y")
        terminal.expect(r"records:")
        assert terminal.process.wait(timeout=60) == 0
    finally:
        terminal.close()
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    result = load_result(folder)
    assert result.agent == "human" and result.outcome == "submitted"
    assert result.raw_score == 4.0 and result.normalized_score == pytest.approx(0.75)
    events = read_transcript(folder)
    scores = [event for event in events if event["type"] == "score"]
    assert len(scores) == 1 and scores[0]["raw_score"] == 4.5
    assert scores[0]["t"] and scores[0]["elapsed_working_s"] > 0  # for baseline curves
    commands = [e["input"].get("command") for e in events
                if e["type"] == "action" and e.get("tool") == "bash"]
    assert "cat answer.py" in commands


def human_with(lines: str) -> tuple[HumanAgent, io.StringIO]:
    agent = make_agent("human", editor="true")
    screen = io.StringIO()
    agent._in, agent._out = io.StringIO(lines), screen  # type: ignore[attr-defined]
    task = load_task(TOY_TASK)
    agent.reset(TaskInfo(task, task.instructions, tool_definitions(["bash", "submit"]),
                         {"steps": 5, "time_s": 60}), "the briefing")
    return agent, screen  # type: ignore[return-value]


def test_working_directory_is_kept_between_lines() -> None:
    agent, _ = human_with("cd data\nls\n")
    assert agent.act("the briefing")["input"]["command"] == "cd data && pwd"
    action = agent.act("exit code: 0\nstdout:\n/home/agent/data\n")
    assert action["input"]["command"] == "cd /home/agent/data && ls"


def test_missing_tool_and_unknown_command_are_explained() -> None:
    agent, screen = human_with(":score\n:frobnicate\n:submit\ny\n")
    assert agent.act("the briefing")["tool"] == "submit"
    assert "This run has no score tool" in screen.getvalue()
    assert "Unknown command ':frobnicate'" in screen.getvalue()


def test_end_of_input_submits() -> None:
    agent, screen = human_with("")
    assert agent.act("the briefing")["tool"] == "submit"
    assert "end of input" in screen.getvalue()
