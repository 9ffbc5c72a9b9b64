"""Episode identity: a re-run with one thing changed runs new episodes; an unchanged re-run
runs none, and says so (the observer hears of each skip)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK, copy_toy_task

from rdbench.records import EpisodeResult
from rdbench.run_observer import EpisodeProgress, NullObserver
from rdbench.runner import EpisodeSpec, run_many
from rdbench.task import load_task

SUBMITS = """
import json, sys
for line in sys.stdin:
    print(json.dumps({"type": "action", "tool": "submit", "input": {}}), flush=True)
"""


class Recorder(NullObserver):
    """Remembers which episodes finished and which were skipped."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, bool]] = []
        self.progress: list[EpisodeProgress] = []

    def episode_progress(self, progress: EpisodeProgress) -> None:
        """Keep it."""
        self.progress.append(progress)

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """Keep it."""
        self.finished.append((result.episode_id, skipped))


def base_specs(tmp_path: Path) -> list[EpisodeSpec]:
    """A scripted agent (with an option and a 2-step budget), a command agent and null."""
    program = tmp_path / "submits.py"
    program.write_text(SUBMITS)
    task = load_task(TOY_TASK)
    return [
        EpisodeSpec(task=task, agent="agents_for_tests:Scripted", budget={"steps": 2},
                    agent_options={"command": "true"}, sandbox="docker"),
        EpisodeSpec(task=task, agent="command", sandbox="docker",
                    agent_options={"command": f"{sys.executable} {program}"}),
        EpisodeSpec(task=task, agent="null", sandbox="docker"),
    ]


def changed_one_at_a_time(specs: list[EpisodeSpec]) -> dict[str, EpisodeSpec]:
    scripted, command, null = specs
    return {
        "agent option": replace(scripted, agent_options={"command": "echo again"}),
        "command line": replace(command, agent_options={
            "command": f"{command.agent_options['command']} --verbose"}),
        "tool set": replace(null, tools=["bash", "submit"]),
        "budget": replace(scripted, budget={"steps": 3}),
        "seed": replace(null, seed=1),
    }


def folders(out: Path) -> set[str]:
    return {path.name for path in out.iterdir() if path.is_dir()}


@pytest.mark.docker
def test_each_change_runs_new_episodes_and_an_unchanged_rerun_runs_none(
    tmp_path: Path, sandbox_image: str
) -> None:
    out = tmp_path / "run"
    specs = base_specs(tmp_path)
    first = run_many(specs, out, parallel=2)
    assert [result.outcome for result in first] == ["limit", "submitted", "submitted"]
    before = folders(out)
    stamps = {name: (out / name / "result.json").stat().st_mtime_ns for name in before}

    again = Recorder()
    assert run_many(specs, out, parallel=2, observer=again) == first
    assert sorted(again.finished) == sorted((spec.episode_id, True) for spec in specs)
    assert again.progress == []  # nothing ran
    assert folders(out) == before
    assert {name: (out / name / "result.json").stat().st_mtime_ns for name in before} == stamps

    changed = changed_one_at_a_time(specs)
    watcher = Recorder()
    results = run_many(list(changed.values()), out, parallel=2, observer=watcher)
    assert [skipped for _, skipped in watcher.finished] == [False] * len(changed)
    new = folders(out) - before
    assert len(new) == len(changed), changed.keys()
    for (what, spec), result in zip(changed.items(), results, strict=True):
        assert spec.episode_id in new, what
        assert result.identity == spec.identity, what
    assert results[3].steps == 3 and results[3].budget["steps"] == 3  # the budget took
    assert results[2].tools == ["bash", "submit"] and results[4].seed == 1
    assert watcher.progress and all(p.step >= 1 for p in watcher.progress)


def test_identity_covers_everything_that_changes_the_outcome(tmp_path: Path) -> None:
    task = load_task(TOY_TASK)
    base = EpisodeSpec(task=task, agent="null", sandbox="bwrap")
    variants: dict[str, Any] = {
        "agent": replace(base, agent="oracle"),
        "option": replace(base, agent_options={"x": 1}),
        "scaffold": replace(base, scaffold="notepad"),
        "tools": replace(base, tools=["bash"]),
        "budget": replace(base, budget={"time_s": 60}),
        "backend": replace(base, sandbox="docker"),
        "seed": replace(base, seed=7),
        "task content": replace(base, task=load_task(copy_toy_task(tmp_path))),
    }
    (tmp_path / "toy-task" / "workspace" / "notes.txt").write_text("one more file")
    variants["task content"] = replace(base, task=load_task(tmp_path / "toy-task"))
    identities = {what: spec.identity for what, spec in variants.items()}
    assert base.identity not in identities.values(), identities
    assert len(set(identities.values())) == len(identities)
    # what does not change the outcome does not change the identity
    same = replace(base, budget=dict(task.budget.model_dump()), run_id="another-run")
    assert same.identity == base.identity
    assert replace(base, tools=None).identity == base.identity
    assert base.episode_id == f"toy-task__null__seed0__{base.identity[:12]}"


def test_auto_backend_is_resolved_in_the_identity() -> None:
    from rdbench.identity import resolve_backend

    task = load_task(TOY_TASK)
    auto = EpisodeSpec(task=task, agent="null", sandbox="auto")
    picked = resolve_backend("auto")
    assert picked in {"docker", "bwrap"}
    assert auto.configuration["sandbox"] == picked
    assert auto.identity == replace(auto, sandbox=picked).identity
