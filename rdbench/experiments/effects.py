"""The statistics of an experiment: per arm and task the mean normalized score with its 95%
bootstrap interval, and per arm its effect against the baseline arm as a paired difference.

A pair is the arm's episode and the baseline's episode of the same task and seed, both scored
(an infrastructure error is no score and leaves its pair out). The effect on a task is the mean
of its pairs' differences (arm minus baseline); over all tasks it is the mean of the tasks'
effects, its interval resampling each task's differences on its own. Pairing takes out what
a seed and a task do to both arms alike, so it needs fewer runs than comparing two means.
The intervals are rdbench.report's percentile bootstrap (fixed seed: the same records always
give the same numbers).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rdbench.records import EpisodeResult
from rdbench.report import agent_label, bootstrap_interval, stratified_bootstrap_interval


@dataclass(frozen=True)
class Point:
    """One scored episode of the experiment."""

    arm: str
    task_id: str
    seed: int
    score: float
    working_s: float
    episode_id: str


@dataclass(frozen=True)
class ArmTask:
    """One arm on one task: its scored episodes' mean and 95% interval (None when n < 2)."""

    arm: str
    task_id: str
    n: int
    mean: float | None
    low: float | None
    high: float | None
    mean_working_s: float | None
    not_scored: int = 0  # episodes that ended in an infrastructure error (no score)


@dataclass(frozen=True)
class Effect:
    """An arm's paired effect against the baseline, on one task or (task_id None) on all."""

    arm: str
    baseline: str
    task_id: str | None
    pairs: int
    mean: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        """True when the 95% interval lies wholly above or wholly below 0."""
        return self.low is not None and self.high is not None and (
            self.low > 0 or self.high < 0)


@dataclass
class Experiment:
    """Everything an experiment's report shows."""

    name: str
    baseline: str
    arms: list[str]
    tasks: list[str]
    cells: list[ArmTask] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)  # per arm: all tasks, then each task
    points: list[Point] = field(default_factory=list)

    def cell(self, arm: str, task_id: str) -> ArmTask | None:
        """The arm's numbers on the task, if it has any episode there."""
        return next((c for c in self.cells if c.arm == arm and c.task_id == task_id), None)

    def overall(self, arm: str) -> Effect | None:
        """The arm's effect over all tasks (None for the baseline itself)."""
        return next((e for e in self.effects if e.arm == arm and e.task_id is None), None)


def arm_of(result: EpisodeResult) -> str:
    """The arm an episode ran for: its label, else its agent and model."""
    return agent_label(result)


def points_of(results: Iterable[EpisodeResult]) -> list[Point]:
    """The scored episodes of `results` as points."""
    return [
        Point(arm=arm_of(r), task_id=r.task_id, seed=r.seed, score=r.normalized_score,
              working_s=r.working_s, episode_id=r.episode_id)
        for r in results if r.scored and r.normalized_score is not None
    ]


def arm_task(arm: str, task_id: str, points: Sequence[Point], not_scored: int = 0) -> ArmTask:
    """The cell of `arm` on `task_id` from its points."""
    scores = [p.score for p in points]
    interval = bootstrap_interval(scores)
    return ArmTask(
        arm=arm, task_id=task_id, n=len(scores),
        mean=statistics.fmean(scores) if scores else None,
        low=interval[0] if interval else None, high=interval[1] if interval else None,
        mean_working_s=statistics.fmean(p.working_s for p in points) if points else None,
        not_scored=not_scored,
    )


def paired_differences(arm: Sequence[Point], baseline: Sequence[Point]) -> list[float]:
    """arm - baseline for each (task, seed) both have, in (task, seed) order. A key seen
    twice on one side (it should not be) counts its last point."""
    theirs = {(p.task_id, p.seed): p.score for p in baseline}
    mine = {(p.task_id, p.seed): p.score for p in arm}
    return [mine[key] - theirs[key] for key in sorted(mine.keys() & theirs.keys())]


def paired_effect(
    arm: str, baseline: str, by_task: dict[str, list[float]], task_id: str | None = None,
) -> Effect:
    """The effect from each task's paired differences: the mean of the tasks' mean
    differences, with the bootstrap interval that resamples each task on its own."""
    groups = [diffs for diffs in by_task.values() if diffs]
    pairs = sum(len(diffs) for diffs in groups)
    if not groups:
        return Effect(arm, baseline, task_id, 0, None, None, None)
    mean = statistics.fmean(statistics.fmean(diffs) for diffs in groups)
    interval = stratified_bootstrap_interval(groups)
    return Effect(arm, baseline, task_id, pairs, mean,
                  interval[0] if interval else None, interval[1] if interval else None)


def analyze(
    results: Iterable[EpisodeResult], *, baseline: str, arms: Sequence[str] = (),
    tasks: Sequence[str] = (), name: str = "experiment",
) -> Experiment:
    """The experiment of `results`: arms in the order given (then any other found), tasks
    likewise; every arm but the baseline gets its paired effect, over all tasks and per task."""
    episodes = list(results)
    points = points_of(episodes)
    arm_order = list(dict.fromkeys([*arms, *sorted({arm_of(r) for r in episodes})]))
    task_order = list(dict.fromkeys([*tasks, *sorted({r.task_id for r in episodes})]))
    experiment = Experiment(name=name, baseline=baseline, arms=arm_order, tasks=task_order,
                            points=points)
    for arm in arm_order:
        for task in task_order:
            mine = [p for p in points if p.arm == arm and p.task_id == task]
            failed = sum(1 for r in episodes if arm_of(r) == arm and r.task_id == task
                         and not r.scored)
            if mine or failed:
                experiment.cells.append(arm_task(arm, task, mine, failed))
    base = [p for p in points if p.arm == baseline]
    for arm in arm_order:
        if arm == baseline:
            continue
        mine = [p for p in points if p.arm == arm]
        by_task = {task: paired_differences([p for p in mine if p.task_id == task],
                                            [p for p in base if p.task_id == task])
                   for task in task_order}
        experiment.effects.append(paired_effect(arm, baseline, by_task))
        experiment.effects += [paired_effect(arm, baseline, {task: diffs}, task)
                               for task, diffs in by_task.items() if diffs]
    return experiment
