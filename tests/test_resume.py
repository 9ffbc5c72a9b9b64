"""Resume after SIGKILL: `rdbench run` killed mid-run (one episode finished, another running)
and resumed ends with every episode finished exactly once, the records finished before the
kill byte for byte intact, and no sandbox of the run left on the host."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BACKENDS, copy_toy_task

from rdbench.suite import run_id_for

# A runner whose agent sleeps 3 s in the sandbox, then submits; the rest of argv is the CLI's.
DRIVER = """
import sys
from rdbench.agents.base import Usage, agent
from rdbench.cli import app

@agent("napper")
class Napper:
    name = "napper"
    def reset(self, info, observation): self.napped = False
    def act(self, observation):
        if self.napped:
            return {"tool": "submit", "input": {}}
        self.napped = True
        return {"tool": "bash", "input": {"command": "sleep 3"}}
    def usage(self): return Usage()

app(sys.argv[1:])
"""
RUNS = 3
STARTED: list[subprocess.Popen[str]] = []


def start(*args: str) -> subprocess.Popen[str]:
    runner = subprocess.Popen([sys.executable, "-c", DRIVER, *args], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append(runner)
    return runner


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test() -> Iterator[None]:
    yield
    for runner in STARTED:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.communicate()
    STARTED.clear()


def run_sandboxes(backend: str, run_id: str, pids: list[int]) -> list[str]:
    """The sandboxes of the run still on the host: its containers (by the run's label), or
    the bwrap folders and cgroups of its processes."""
    if backend == "docker":
        import docker

        client = docker.from_env()
        try:
            found = client.containers.list(all=True, sparse=True,
                                           filters={"label": f"rdbench.run={run_id}"})
            return [container.short_id for container in found]
        finally:
            client.close()
    left: list[Path] = []
    for pid in pids:
        left += Path("/var/tmp").glob(f"rdbench-bwrap-{pid}-*")
        left += Path("/sys/fs/cgroup").glob(f"*/rdbench/{pid}-*")
    return [str(path) for path in left]


def episode_running(out: Path) -> bool:
    """True while an episode without result.json has made its (3 s) action."""
    for transcript in out.glob("*/transcript.jsonl"):
        if not (transcript.parent / "result.json").exists() and '"action"' in (
            transcript.read_text(errors="replace")
        ):
            return True
    return False


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_run_resumes_with_every_episode_finished_exactly_once(
    backend: str, tmp_path: Path
) -> None:
    if backend == "docker":
        pytest.importorskip("docker")
    task = copy_toy_task(tmp_path)
    out = tmp_path / "run"
    command = ["run", "--task", str(task), "--agent", "napper", "--runs", str(RUNS),
               "--sandbox", backend, "--out", str(out)]
    first = start(*command)
    deadline = time.monotonic() + 120
    while not (list(out.glob("*/result.json")) and episode_running(out)):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no episode finished while another ran"
        time.sleep(0.05)
    run_id = run_id_for(out)
    assert run_sandboxes(backend, run_id, [first.pid]), "no sandbox ran at the kill"
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    finished_before = {path.parent.name: path.read_bytes() for path in out.glob("*/result.json")}
    transcripts_before = {name: (out / name / "transcript.jsonl").read_bytes()
                          for name in finished_before}
    assert 1 <= len(finished_before) < RUNS

    # the same command again for docker; --resume for bwrap
    second = start(*(command if backend == "docker" else ["run", "--resume", str(out)]))
    stdout, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr

    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert len(folders) == RUNS
    for folder in folders:
        assert (folder / "result.json").is_file()
        events = [json.loads(line) for line in (folder / "transcript.jsonl").read_text()
                  .splitlines()]
        assert [event["type"] for event in events].count("reset") == 1, folder.name
        assert [event["type"] for event in events].count("grade") == 1, folder.name
    for name, data in finished_before.items():
        assert (out / name / "result.json").read_bytes() == data
        assert (out / name / "transcript.jsonl").read_bytes() == transcripts_before[name]
    skipped = len(finished_before)
    assert f"{RUNS} episode(s): {RUNS - skipped} run now, {skipped} skipped" in stdout
    assert run_sandboxes(backend, run_id, [first.pid, second.pid]) == []
