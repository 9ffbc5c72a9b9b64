"""Cleanup: Ctrl-C, SIGTERM or SIGHUP during `rdbench run` removes its sandboxes before
exiting (also during grading, within seconds); after SIGKILL the run's reaper does (see
test_sandbox_lifetime.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS, TOY_TASK, copy_toy_task

# A runner whose agent sleeps in the sandbox at every step, started as its own process.
DRIVER = """
import sys
from rdbench.agents.base import Usage, agent
from rdbench.cli import app

@agent("sleepy")
class Sleepy:
    name = "sleepy"
    def reset(self, info, observation): pass
    def act(self, observation): return {"tool": "bash", "input": {"command": "sleep 120"}}
    def usage(self): return Usage()

@agent("submitter")
class Submitter:
    name = "submitter"
    def reset(self, info, observation): pass
    def act(self, observation): return {"tool": "submit", "input": {}}
    def usage(self): return Usage()

app(["run", "--task", sys.argv[1], "--agent", sys.argv[4], "--out", sys.argv[2],
     "--sandbox", sys.argv[3], "--episodes", "2", "--parallel", "2"])
"""


STARTED: list[subprocess.Popen[str]] = []


def start_runner(
    out: Path, backend: str = "docker", agent: str = "sleepy", task: Path = TOY_TASK
) -> subprocess.Popen[str]:
    runner = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(task), str(out), backend, agent],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    STARTED.append(runner)
    return runner


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test() -> Iterator[None]:
    """A runner still going after a failed test is stopped (and its sandboxes removed)."""
    yield
    while STARTED:
        runner = STARTED.pop()
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.communicate()


def bwrap_leftovers(pid: int) -> list[Path]:
    """The bwrap sandboxes' folders and cgroups of the runner `pid`."""
    found = list(Path("/var/tmp").glob(f"rdbench-bwrap-{pid}-*"))
    return found + list(Path("/sys/fs/cgroup").glob(f"*/rdbench/{pid}-*"))


def sandboxes_of(backend: str, runner: subprocess.Popen[str]) -> list[Any]:
    """What the runner's sandboxes left on the host: containers, or bwrap folders."""
    if backend == "docker":
        import docker

        client = docker.from_env()
        try:
            return containers_of(client, runner.pid)
        finally:
            client.close()
    return [path for path in bwrap_leftovers(runner.pid) if path.parent.name != "rdbench"]


def wait_for_sandboxes(backend: str, runner: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 90
    while len(sandboxes_of(backend, runner)) < count:
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the runner started too few sandboxes"
        time.sleep(0.2)


def containers_of(client: Any, pid: int) -> list[Any]:
    return client.containers.list(all=True, sparse=True,
                                  filters={"label": f"rdbench.pid={pid}"})


def wait_for_containers(client: Any, runner: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(containers_of(client, runner.pid)) < count:
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the runner started no sandboxes"
        time.sleep(0.3)
    time.sleep(1.5)  # let the agents get into their sleeping commands


@pytest.mark.docker
def test_ctrl_c_removes_the_runs_sandboxes(
    docker_client: Any, sandbox_image: str, tmp_path: Path, busy_cores: None
) -> None:
    runner = start_runner(tmp_path)
    wait_for_containers(docker_client, runner, 2)
    started = time.monotonic()
    runner.send_signal(signal.SIGINT)
    _, stderr = runner.communicate(timeout=60)
    took = time.monotonic() - started
    assert runner.returncode == 130, stderr
    assert "interrupted" in stderr
    assert took < 10, f"rdbench run took {took:.1f} s to stop with both cores busy"
    assert containers_of(docker_client, runner.pid) == []
    assert not list(tmp_path.glob("*/result.json"))  # unfinished: resumed by the next run


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(
    backend: str, signum: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "docker":
        request.getfixturevalue("sandbox_image")
    runner = start_runner(tmp_path, backend)
    wait_for_sandboxes(backend, runner, 2)
    time.sleep(1.5)  # let the agents get into their sleeping commands
    runner.send_signal(signum)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    assert sandboxes_of(backend, runner) == []
    assert bwrap_leftovers(runner.pid) == []
    assert not list(tmp_path.glob("out/*/result.json"))
    assert not list(tmp_path.glob("*/result.json"))


def slow_grading_task(tmp_path: Path) -> Path:
    """The toy task with a grader that sleeps for five minutes before its verdict."""
    task = copy_toy_task(tmp_path)
    grader = task / "grader" / "score.py"
    grader.write_text("import time\ntime.sleep(300)\n" + grader.read_text())
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("timeout_s = 60", "timeout_s = 600"))
    return task


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_grading_ends_the_run_within_ten_seconds(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, busy_cores: None
) -> None:
    if backend == "docker":
        request.getfixturevalue("sandbox_image")
    task = slow_grading_task(tmp_path)
    out = tmp_path / "out"
    runner = start_runner(out, backend, agent="submitter", task=task)
    wait_for_sandboxes(backend, runner, 4)  # two agents' sandboxes and two gradings
    time.sleep(2)  # the graders are sleeping now
    started = time.monotonic()
    runner.send_signal(signal.SIGINT)
    _, stderr = runner.communicate(timeout=60)
    took = time.monotonic() - started
    assert runner.returncode == 130, stderr
    assert took < 10, f"rdbench run took {took:.1f} s to stop during grading"
    assert sandboxes_of(backend, runner) == []
    assert not list(out.glob("*/result.json"))

