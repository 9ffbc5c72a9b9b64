"""Episodes through the runner: records on disk, oracle and null, resume."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK

from rdbench.agents import TaskInfo, Usage
from rdbench.observation import Observation
from rdbench.records import (
    EpisodeResult,
    ModelReplyEvent,
    ModelRequestEvent,
    load_result,
    parse_event,
)
from rdbench.runner import EpisodeSpec, run_episode, run_many
from rdbench.task import load_task
from rdbench.transcript import read_transcript

pytestmark = pytest.mark.docker


def test_oracle_and_null_set_the_scale(tmp_path: Path, sandbox_image: str) -> None:
    task = load_task(TOY_TASK)
    specs = [EpisodeSpec(task=task, agent="oracle"), EpisodeSpec(task=task, agent="null")]
    oracle, null = run_many(specs, tmp_path, parallel=2)
    assert oracle.normalized_score == pytest.approx(1.0)
    assert null.normalized_score == 0.0
    assert oracle.terminated and not oracle.truncated and oracle.outcome == "submitted"
    for spec, result in zip(specs, (oracle, null), strict=True):
        folder = tmp_path / spec.episode_id
        assert folder.name.startswith(f"toy-task__{result.agent}__seed0__")
        assert load_result(folder) == result
        assert result.identity == spec.identity and result.image == sandbox_image
        assert result.sandbox == "docker" and result.infrastructure_retries == 0
        assert result.tools[-1] == "submit" and result.budget["steps"] == task.budget.steps
        with tarfile.open(folder / "workspace.tar.gz") as tar:
            assert "answer.py" in tar.getnames()
        events = read_transcript(folder)
        assert events[0]["type"] == "reset" and events[-1]["type"] == "usage"
    assert oracle.steps == 2  # one write, one submit


def test_finished_episode_is_not_run_again(tmp_path: Path, sandbox_image: str) -> None:
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="null")
    first = run_episode(spec, tmp_path)
    assert isinstance(first, EpisodeResult)
    result_file = tmp_path / spec.episode_id / "result.json"
    stamp = result_file.stat().st_mtime_ns
    assert run_episode(spec, tmp_path) == first
    assert result_file.stat().st_mtime_ns == stamp


class RecordsModelEvents:
    """Records a model request and reply (and one invalid event), then submits; keeps what
    it was given."""

    name = "records-model-events"
    seen: list[Any] = []  # noqa: RUF012 (the test reads what the runner's agent saw)

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Record the model's work."""
        RecordsModelEvents.seen[:] = [info.seed, observation]
        info.record("model_request", {"model": "m", "system": "be brief",
                                      "messages": [{"role": "user", "content": "hi"}]})
        info.record("model_reply", {"model": "m", "text": "I submit", "thinking": "easy",
                                    "latency_s": 0.5})
        info.record("model_reply", {"model": "m", "no_such_field": 1})

    def act(self, observation: str) -> dict[str, Any]:
        """Submit."""
        RecordsModelEvents.seen.append(observation)
        return {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


def test_agent_gets_seed_and_observation_and_its_model_events_are_typed_records(
    tmp_path: Path, sandbox_image: str
) -> None:
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="test_runner:RecordsModelEvents",
                       seed=5)
    result = run_episode(spec, tmp_path)
    assert result.outcome == "submitted" and result.seed == 5
    seed, first, *_ = RecordsModelEvents.seen
    assert seed == 5 and isinstance(first, Observation) and first.strip()
    events = read_transcript(tmp_path / spec.episode_id)
    request, reply = (parse_event(e) for e in events if e["type"].startswith("model_"))
    assert isinstance(request, ModelRequestEvent) and request.system == "be brief"
    assert isinstance(reply, ModelReplyEvent) and reply.thinking == "easy"
    (bad,) = [e for e in events if e["type"] == "error"]
    assert "invalid 'model_reply' event" in bad["message"] and "no_such_field" in bad["message"]
