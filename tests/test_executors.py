"""Executors: real episodes through the Ray executor on a local Ray instance, on both sandbox
backends, leave the same records as the local executor (apart from times); Ctrl-C during a
Ray run stops its tasks and removes their sandboxes."""

from __future__ import annotations

import _thread
import json
import signal
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS, TOY_TASK

from rdbench.executors import LocalExecutor, RayExecutor, write_episode
from rdbench.records import EpisodeResult
from rdbench.suite import AgentChoice, RunConfig, expand

# A command-protocol agent (built in, so a Ray worker needs no test module) that sleeps.
SLEEPER = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    if json.loads(line)[\"type\"] == \"end\": break\n"
    "    print(json.dumps({\"type\": \"action\", \"tool\": \"bash\", "
    "\"input\": {\"command\": \"sleep 60\"}}), flush=True)\n"
)
TIMES = {"elapsed_s", "working_s", "grading_s", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance with 2 CPUs, for this module's tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def _specs(backend: str, run_id: str, agents: tuple[str, ...] = ("null", "oracle")) -> list[Any]:
    config = RunConfig(tasks=[str(TOY_TASK)], agents=[AgentChoice(name=name) for name in agents],
                       sandbox=backend)
    return expand(config, run_id)


def _without_times(result: EpisodeResult) -> dict[str, Any]:
    return result.model_dump(exclude=TIMES)


def _transcript_without_times(folder: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]
    for event in events:
        event.pop("t", None)
        for key in ("grading_s", "elapsed_s", "working_s", "details"):
            event.pop(key, None)
    return events


def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted(tar.getnames())


@pytest.mark.parametrize("backend", BACKENDS)
def test_ray_episodes_leave_the_records_of_local_ones(
    backend: str, ray_instance: Any, tmp_path: Path
) -> None:
    specs = _specs(backend, "executors-compare")
    local = LocalExecutor(parallel=2).run(specs, tmp_path / "local")
    remote = RayExecutor(parallel=2).run(specs, tmp_path / "ray")
    assert [result.normalized_score for result in remote.results] == [0.0, 1.0]
    assert [result.sandbox for result in remote.results] == [backend, backend]
    assert [_without_times(r) for r in remote.results] == [
        _without_times(r) for r in local.results]
    for spec in specs:
        here, there = tmp_path / "local" / spec.episode_id, tmp_path / "ray" / spec.episode_id
        assert sorted(p.name for p in there.iterdir()) == sorted(p.name for p in here.iterdir())
        assert _transcript_without_times(there) == _transcript_without_times(here)
        assert _members(there / "workspace.tar.gz") == _members(here / "workspace.tar.gz")


@pytest.mark.docker
def test_ray_run_skips_finished_episodes(
    ray_instance: Any, tmp_path: Path, sandbox_image: str
) -> None:
    specs = _specs("docker", "executors-skip", agents=("null",))
    first = RayExecutor().run(specs, tmp_path)
    record = (tmp_path / specs[0].episode_id / "result.json").read_bytes()
    again = RayExecutor().run(specs, tmp_path)
    assert again.skipped == [specs[0].episode_id] and first.skipped == []
    assert again.results == first.results
    assert (tmp_path / specs[0].episode_id / "result.json").read_bytes() == record


def test_episode_files_are_written_with_the_result_last(tmp_path: Path) -> None:
    folder = tmp_path / "episode"
    folder.mkdir()
    (folder / "result.json").write_text("stale")
    (folder / "transcript.jsonl").write_text("an unfinished attempt\n")
    write_episode(folder, {"result.json": b"{}", "transcript.jsonl": b"new\n"})
    assert (folder / "transcript.jsonl").read_bytes() == b"new\n"
    assert (folder / "result.json").read_bytes() == b"{}"
    assert sorted(path.name for path in folder.iterdir()) == ["result.json", "transcript.jsonl"]
    for name in ("../escape", "/etc/passwd", "logs/../../x"):
        with pytest.raises(ValueError, match="a path inside its folder"):
            write_episode(folder, {name: b"x"})
    write_episode(folder, {"logs/agent.log": b"nested", "result.json": b"{}"})
    assert (folder / "logs" / "agent.log").read_bytes() == b"nested"


@pytest.mark.docker
def test_ctrl_c_stops_ray_tasks_and_removes_their_sandboxes(
    ray_instance: Any, tmp_path: Path, sandbox_image: str, docker_client: Any
) -> None:
    run_id = "executors-ctrl-c"
    label = {"label": f"rdbench.run={run_id}"}
    config = RunConfig(tasks=[str(TOY_TASK)], sandbox="docker", agents=[
        AgentChoice(name="command", options={"command": f"{sys.executable} -c '{SLEEPER}'"})])
    specs = expand(config, run_id)
    seen: list[int] = []
    interrupted_at: list[float] = []
    returned = threading.Event()

    def interrupt_once_running() -> None:
        deadline = time.monotonic() + 300  # a busy machine starts Ray workers slowly
        while time.monotonic() < deadline and not returned.is_set():
            running = docker_client.containers.list(sparse=True, filters=label)
            if running:
                seen.append(len(running))
                time.sleep(1.0)  # into the agent's sleeping command
                break
            time.sleep(0.2)
        for _ in range(3):  # interrupt even if nothing started: a failing test, never a hung one
            if returned.is_set():
                return
            interrupted_at.append(time.monotonic())
            _thread.interrupt_main()
            if returned.wait(60):
                return

    # Ctrl-C as Python handles it, whatever handler an earlier test or library left behind
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_once_running, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            RayExecutor().run(specs, tmp_path)
    finally:
        returned.set()
        signal.signal(signal.SIGINT, previous)
    stopped_in = time.monotonic() - interrupted_at[0]
    watcher.join()
    assert seen, "the Ray task started no sandbox"
    # a cancelled Ray task reports done at once and removes its sandbox as it stops: soon
    deadline = time.monotonic() + 30
    while docker_client.containers.list(all=True, sparse=True, filters=label):
        assert time.monotonic() < deadline, "the Ray task left its sandbox for 30 s"
        time.sleep(0.5)
    assert not list(tmp_path.glob("*/result.json"))
    assert stopped_in < 30, stopped_in  # Ctrl-C stops the run at once, not when it ends


@pytest.mark.bwrap
def test_run_command_with_the_ray_executor(ray_instance: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rdbench.cli import app
    from rdbench.records import load_result
    from rdbench.suite import RunConfig

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--task", str(TOY_TASK), "--agent", "oracle",
                                      "--runs", "2", "--executor", "ray", "--parallel", "2",
                                      "--sandbox", "bwrap", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 episode(s): 2 run now, 0 skipped" in result.stdout
    assert RunConfig.load(out).executor == "ray"
    folders = sorted(path for path in out.iterdir() if path.is_dir())
    records = [json.loads((folder / "result.json").read_text()) for folder in folders]
    assert sorted(record["seed"] for record in records) == [0, 1]
    for folder, record in zip(folders, records, strict=True):
        score = load_result(folder).normalized_score if "schema_version" in record else (
            record["normalized_score"])
        assert score == 1.0
