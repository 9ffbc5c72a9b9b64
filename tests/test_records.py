"""EpisodeResult: what result.json holds, written and read back through the same model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rdbench.records import RESULT_SCHEMA, EpisodeResult, RecordError, UsageRecord, load_result
from rdbench.transcript import write_json_atomic


def fields(**changes: Any) -> dict[str, Any]:
    made = {
        "episode_id": "toy-task__null__seed0__0123456789ab", "run_id": "local",
        "identity": "0123456789ab" + "0" * 52, "task_id": "toy-task", "task_version": "1.0.0",
        "task_hash": "f" * 64, "agent": "null", "agent_options": {"command": "prog --x"},
        "seed": 0, "tools": ["bash", "submit"], "budget": {"steps": 20, "time_s": 600.0},
        "sandbox": "docker", "outcome": "submitted", "raw_score": 1.0,
        "normalized_score": 0.0, "valid": True, "message": "printed 1", "terminated": True,
        "truncated": False, "limit_hit": None, "agent_error": None,
        "infrastructure_error": None, "steps": 1, "elapsed_s": 3.2, "working_s": 0.4,
        "grading_s": 0.0, "usage": UsageRecord(input_tokens=10, total_tokens=10),
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "finished_at": "2026-01-01T00:00:03.200+00:00", "rdbench_version": "0.1.0",
        "scaffold": None, "image": "rdbench-sandbox:abc", "infrastructure_retries": 1,
    }
    return {**made, **changes}


def test_result_round_trips_through_result_json(tmp_path: Path) -> None:
    result = EpisodeResult(**fields())
    write_json_atomic(tmp_path / "result.json", result.model_dump(mode="json"))
    assert load_result(tmp_path) == result
    assert load_result(tmp_path / "result.json").usage.input_tokens == 10
    assert json.loads((tmp_path / "result.json").read_text())["schema_version"] == RESULT_SCHEMA


def test_unknown_field_is_rejected_on_write() -> None:
    with pytest.raises(ValidationError, match="ended_by"):
        EpisodeResult(**fields(ended_by="submit"))
    with pytest.raises(ValidationError, match="outcome"):
        EpisodeResult(**fields(outcome="crashed"))


def test_another_schema_version_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    data = EpisodeResult(**fields()).model_dump(mode="json")
    write_json_atomic(tmp_path / "result.json", {**data, "schema_version": 99})
    with pytest.raises(RecordError, match=r"schema_version 99, this rdbench reads 1.*re-run"):
        load_result(tmp_path)
    write_json_atomic(tmp_path / "result.json", {"task_id": "old dict result"})
    with pytest.raises(RecordError, match="schema_version None"):
        load_result(tmp_path)


def test_infrastructure_error_is_not_scored() -> None:
    failed = EpisodeResult(**fields(outcome="infrastructure_error", raw_score=None,
                                    normalized_score=None, valid=False))
    assert not failed.scored and EpisodeResult(**fields()).scored
