"""Synthetic records for the report, progress and replay tests: valid by construction (made
from the records models), no sandbox needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rdbench.records import EpisodeResult, Outcome, UsageRecord


def make_result(
    task: str, agent: str, seed: int, outcome: Outcome, score: float | None, *,
    cost: float = 0.0, working_s: float = 10.0, model: str | None = None,
) -> EpisodeResult:
    """An EpisodeResult of `outcome` scoring `score` (None: not graded)."""
    options: dict[str, Any] = {"model": model} if model else {}
    label = f"{agent}-{model}" if model else agent
    return EpisodeResult(
        episode_id=f"{task}__{label}__seed{seed}-abcd1234", run_id="test", identity="abcd1234",
        task_id=task, task_version="1.0.0", task_hash="h", agent=agent, agent_options=options,
        seed=seed, tools=["bash", "submit"], budget={"steps": 10}, sandbox="docker",
        outcome=outcome, raw_score=score, normalized_score=score, valid=score is not None,
        message="", terminated=outcome == "submitted", truncated=outcome == "limit",
        limit_hit="steps" if outcome == "limit" else None,
        agent_error="boom" if outcome == "agent_error" else None,
        infrastructure_error="engine lost" if outcome == "infrastructure_error" else None,
        steps=3, elapsed_s=working_s + 1, working_s=working_s, grading_s=0.5,
        usage=UsageRecord(cost_usd=cost, total_tokens=100), started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:01:00Z", rdbench_version="0.1.0",
    )


def write_run(folder: Path, results: list[EpisodeResult], unfinished: list[str]) -> Path:
    """A run folder holding `results` (one episode folder each) and unfinished folders."""
    for result in results:
        episode = folder / result.episode_id
        episode.mkdir(parents=True)
        (episode / "result.json").write_text(result.model_dump_json(indent=2))
        (episode / "transcript.jsonl").write_text("")
    for name in unfinished:
        (folder / name).mkdir(parents=True)
        (folder / name / "transcript.jsonl").write_text("")
    return folder
