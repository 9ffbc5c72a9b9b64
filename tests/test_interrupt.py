"""Cleanup: Ctrl-C during `rdbench run` removes its sandboxes before exiting (after SIGKILL
the run's reaper does: see test_sandbox_lifetime.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK

pytestmark = pytest.mark.docker

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

app(["run", "--task", sys.argv[1], "--agent", "sleepy", "--out", sys.argv[2],
     "--sandbox", "docker", "--episodes", "2", "--parallel", "2"])
"""


def start_runner(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(TOY_TASK), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def containers_of(client: Any, pid: int) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"rdbench.pid={pid}"})


def wait_for_containers(client: Any, runner: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(containers_of(client, runner.pid)) < count:
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the runner started no sandboxes"
        time.sleep(0.3)
    time.sleep(1.5)  # let the agents get into their sleeping commands


def test_ctrl_c_removes_the_runs_sandboxes(
    docker_client: Any, sandbox_image: str, tmp_path: Path
) -> None:
    runner = start_runner(tmp_path)
    wait_for_containers(docker_client, runner, 2)
    runner.send_signal(signal.SIGINT)
    _, stderr = runner.communicate(timeout=60)
    assert runner.returncode == 130, stderr
    assert "interrupted" in stderr
    assert containers_of(docker_client, runner.pid) == []
    assert not list(tmp_path.glob("*/result.json"))  # unfinished: resumed by the next run

