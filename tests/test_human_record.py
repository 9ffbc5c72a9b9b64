"""A person's session recorded and replayed, and a person leaving: `rdbench run --agent human`
through a real terminal (tmux) on both backends. The session is an asciinema v2 cast in the
episode folder (keystrokes only when the person opts in) that `rdbench transcript --play`
replays; closing the terminal mid-episode leaves a graded result, ended by the person
leaving, and none of the run's sandboxes."""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS, TOY_TASK, copy_toy_task
from test_human_terminal import PROMPT, Tmux

from rdbench.agents import TaskInfo, make_agent
from rdbench.agents.base import TerminalAccess
from rdbench.cast import CAST, read_cast
from rdbench.records import load_result
from rdbench.task import load_task
from rdbench.tools import tool_definitions
from rdbench.transcript import read_transcript

CLI = [sys.executable, "-c", "from rdbench.cli import app; app()"]


def _ready(backend: str, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("sandbox_image")  # both: bwrap's files come from the image
    if backend == "bwrap":
        request.getfixturevalue("bwrap_rootfs")


def _start(tmp_path: Path, backend: str, agent: str = "human") -> Tmux:
    """`rdbench run --agent AGENT` on the toy task, typed at an interactive bash in tmux as a
    person would start it (so that, as in any terminal, the shell passes SIGHUP on to it
    when the terminal closes). A wrapper that outlives the hang-up writes the runner's exit
    code to runner.exit."""
    task = copy_toy_task(tmp_path / "tasks")
    run = [*CLI, "run", "--task", str(task), "--agent", agent, "--sandbox", backend,
           "--out", str(tmp_path / "runs")]
    tmux = Tmux(["bash", "--norc", "--noprofile", "-i"], cwd=tmp_path)
    wrapper = 'trap "" HUP; "$@"; echo $? > runner.exit'
    tmux.type(shlex.join(["sh", "-c", wrapper, "rdbench", *run]) + "; echo RUN-EXIT=$?")
    return tmux


def _runner_pid(out: Path) -> int:
    """The pid of the runner writing to `out` (the only Python process naming it)."""
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and line[0] == sys.executable.encode() and \
                str(out).encode() in line:
            return int(entry.name)
    raise AssertionError(f"no runner writing to {out}")


def _episode(tmp_path: Path) -> Path:
    (folder,) = [path for path in (tmp_path / "runs").iterdir() if path.is_dir()]
    return folder


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _leftovers(backend: str, pid: int) -> list[Any]:
    """What the runner `pid` left on the host: its containers (labelled with its pid), or
    its bwrap sandboxes' folders and cgroups."""
    if backend == "docker":
        import docker

        client = docker.from_env()
        try:
            return client.containers.list(all=True, sparse=True,
                                          filters={"label": f"rdbench.pid={pid}"})
        finally:
            client.close()
    found = list(Path("/var/tmp").glob(f"rdbench-bwrap-{pid}-*"))
    return found + list(Path("/sys/fs/cgroup").glob(f"*/rdbench/{pid}-*"))


def _check_cast(cast_path: Path) -> Any:
    """The cast, checked to be asciinema v2: a header, events in time order."""
    header = json.loads(cast_path.read_text().splitlines()[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (120, 40)
    assert header["env"]["SHELL"] == "/bin/bash" and header["env"]["TERM"]
    cast = read_cast(cast_path)
    times = [seconds for seconds, _, _ in cast.events]
    assert times == sorted(times) and len(times) > 3
    assert {code for _, code, _ in cast.events} <= {"o", "i", "r"}
    return cast


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_session_is_a_cast_that_rdbench_transcript_replays(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    tmux = _start(tmp_path, backend)
    try:
        tmux.expect(PROMPT, timeout=90)
        tmux.run("echo recorded-$((6 * 7))", r"^recorded-42")
        tmux.resize(30, 100)
        tmux.run("stty size", r"^30 100")
        tmux.type("exit")
        tmux.expect(r"RUN-EXIT=0", timeout=90)
    finally:
        tmux.kill()
    folder = _episode(tmp_path)
    result = load_result(folder)
    assert result.outcome == "submitted" and result.ended_by is None
    assert result.recording == CAST
    cast = _check_cast(folder / CAST)
    shown = cast.output
    assert "Make `answer.py` print a bigger number" in shown  # the briefing
    assert "recorded-42\r\n" in shown and "The shell ended" in shown
    assert cast.typed == "" and all(code != "i" for _, code, _ in cast.events)
    resized = [index for index, (_, code, text) in enumerate(cast.events)
               if code == "r" and text == "100x30"]
    assert resized and "30 100" in "".join(text for _, code, text in cast.events[resized[0]:]
                                           if code == "o")  # fmt: skip
    opened = [e for e in read_transcript(folder) if e.get("action") == "terminal_open"]
    assert opened[0]["details"]["cast"] == CAST
    assert opened[0]["details"]["keys_recorded"] is False
    # replayed at high speed, the bytes are those the screen showed
    played = subprocess.run([*CLI, "transcript", str(folder), "--play", "--speed", "1000"],
                            capture_output=True, timeout=60)
    assert played.returncode == 0, played.stderr.decode()
    assert played.stdout == shown.encode()
    told = subprocess.run([*CLI, "transcript", str(folder)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert "terminal session recorded" in told.stdout and "--play" in told.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_closing_the_terminal_mid_episode_grades_it_as_the_person_left(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    tmux = _start(tmp_path, backend, agent="human record_keys=true")
    try:
        tmux.expect(PROMPT, timeout=90)
        tmux.type("echo 'print(3)' > answer.py")
        tmux.expect(rf"answer.py\n.*{PROMPT}")
        tmux.run("echo typed-keys-$((6 * 7))", r"^typed-keys-42")
        pid = _runner_pid(tmp_path / "runs")
    finally:
        tmux.kill()  # the person's terminal goes away mid-episode
    result_file = tmp_path / "runs"
    deadline = time.monotonic() + 120
    while (_running(pid) or not list(result_file.glob("*/result.json"))) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(pid), "the runner is still going 120 s after its terminal closed"
    assert (tmp_path / "runner.exit").read_text().strip() == "0"  # it ended well, not stopped
    folder = _episode(tmp_path)
    result = load_result(folder)  # graded and recorded, not left unfinished
    assert result.ended_by == "person_left" and result.outcome == "submitted"
    assert result.raw_score == 3.0 and result.normalized_score == pytest.approx(0.5)
    assert result.agent_options == {"record_keys": True}
    closed = [e for e in read_transcript(folder) if e.get("action") == "terminal_closed"]
    assert closed[0]["details"]["ended"] == "closed"
    assert _leftovers(backend, pid) == []
    cast = _check_cast(folder / CAST)
    assert "echo typed-keys-$((6 * 7))" in cast.typed  # keystrokes, opted in
    assert "typed-keys-42\r\n" in cast.output


class GoneTerminal(io.StringIO):
    """The person's stdout once their terminal closed: every write fails with EIO."""

    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "Input/output error")


def test_the_briefing_is_recorded_and_a_gone_terminal_is_no_error(tmp_path: Path) -> None:
    task = load_task(TOY_TASK)
    access = TerminalAccess(open=lambda *a, **k: None, time_left=lambda: 60.0,
                            cast=tmp_path / CAST)
    agent = make_agent("human")
    agent._out = GoneTerminal()  # type: ignore[attr-defined]
    agent.reset(TaskInfo(task, task.instructions, tool_definitions(["bash", "submit"]),
                         {"time_s": 600}, terminal=access), "")
    agent.close()  # type: ignore[attr-defined]
    cast = read_cast(tmp_path / CAST)
    assert cast.header["version"] == 2 and (cast.header["height"], cast.header["width"]) == (
        24, 80)  # no terminal to measure
    assert "Make `answer.py` print a bigger number" in cast.output
    assert "\r\n" in cast.output and "\n" not in cast.output.replace("\r\n", "")
    assert agent.ended_by is None  # type: ignore[attr-defined]
