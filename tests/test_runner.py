"""Episodes through the runner: records on disk, oracle and null, resume."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from helpers import TOY_TASK

from rdbench.runner import EpisodeSpec, run_episode, run_many
from rdbench.task import load_task
from rdbench.transcript import read_transcript

pytestmark = pytest.mark.docker

REQUIRED = {"task_id", "agent", "raw_score", "normalized_score", "terminated", "truncated",
            "steps", "elapsed_s", "task_version", "seed", "valid", "message", "limit_hit",
            "usage", "sandbox", "rdbench_version"}


def test_oracle_and_null_set_the_scale(tmp_path: Path, sandbox_image: str) -> None:
    task = load_task(TOY_TASK)
    oracle, null = run_many(
        [EpisodeSpec(task=task, agent="oracle"), EpisodeSpec(task=task, agent="null")],
        tmp_path, parallel=2,
    )
    assert oracle["normalized_score"] == pytest.approx(1.0)
    assert null["normalized_score"] == 0.0
    assert oracle["terminated"] and not oracle["truncated"]
    for result in (oracle, null):
        folder = tmp_path / f"toy-task__{result['agent']}__seed0"
        on_disk = json.loads((folder / "result.json").read_text())
        assert on_disk == result
        assert set(on_disk) >= REQUIRED
        with tarfile.open(folder / "workspace.tar.gz") as tar:
            assert "answer.py" in tar.getnames()
        events = read_transcript(folder)
        assert events[0]["type"] == "reset" and events[-1]["type"] == "usage"
    assert oracle["steps"] == 2  # one write, one submit


def test_finished_episode_is_not_run_again(tmp_path: Path, sandbox_image: str) -> None:
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="null")
    first = run_episode(spec, tmp_path)
    result_file = tmp_path / spec.episode_id / "result.json"
    stamp = result_file.stat().st_mtime_ns
    assert run_episode(spec, tmp_path) == first
    assert result_file.stat().st_mtime_ns == stamp
