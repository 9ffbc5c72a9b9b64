"""The leaderboard's numbers, computed once and read by the site, the plots and the Markdown.

Per row (a submission's agent, the reference solution, recorded human runs) and task: n, the
mean normalized score with its 95% bootstrap interval (rdbench.report's bootstrap), mean cost
and working time; score@k for k = 1, 2, 4; the overall score (the mean over tasks of the
per-task means, with a bootstrap interval that resamples each task's runs on its own).
A human row also keeps each episode's validation scores over its working time (`curves`):
the score-against-working-time plot draws them as curves beside the agents' (RE-Bench's
figure).

score@k follows RE-Bench: an agent's score with a total working-time budget is the best of
the runs it could make in that time. For each task the budget of score@k is k times the
longest mean working time per run among the rows (k runs of the slowest agent); a faster
agent fits more runs in it (as many as its runs allow: then `capped`). The best of m runs is
estimated without bias from all n runs: the expected maximum of m runs drawn from them.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rdbench.leaderboard.inputs import Submission, SubmissionEpisode
from rdbench.records import ResetEvent, ScoreEvent
from rdbench.report import agent_label, bootstrap_interval, stratified_bootstrap_interval

KS = (1, 2, 4)
HUMAN_AGENT = "human"
LISTED = ("verified", "verified with warnings")  # the main table's; the rest go apart
RowKind = Literal["agent", "human", "reference"]


@dataclass(frozen=True)
class TaskCell:
    """One row's numbers on one task, and the episodes they come from."""

    task_id: str
    n: int
    mean: float | None
    low: float | None  # 95% bootstrap interval of the mean; None when n < 2
    high: float | None
    mean_cost_usd: float | None
    mean_working_s: float | None
    scores: tuple[float, ...] = ()
    working_s: tuple[float, ...] = ()
    episodes: tuple[str, ...] = ()  # episode ids, in the order of `scores`


@dataclass(frozen=True)
class AtK:
    """score@k of one row on one task: the expected best of `runs` runs, which fit in the
    task's budget of k slow runs; `capped` when more would fit than the row has."""

    k: int
    score: float
    runs: int | None
    total_working_s: float | None
    capped: bool = False


@dataclass(frozen=True)
class ScoreCurve:
    """One episode's validation scores (its `score` events) against its working time: a
    human baseline's curve in the score-against-working-time plot."""

    episode_id: str
    task_id: str
    points: tuple[tuple[float, float], ...]  # (working seconds, normalized score), in time order


@dataclass
class BoardRow:
    """A line of the leaderboard."""

    key: str  # unique, safe in a file name and an HTML id
    submission: str
    agent: str
    kind: RowKind
    status: str  # verified, verified with warnings, rejected, unverified; reference: reference
    tasks: dict[str, TaskCell] = field(default_factory=dict)
    overall: float | None = None
    overall_low: float | None = None
    overall_high: float | None = None
    at_k: dict[int, dict[str, AtK]] = field(default_factory=dict)  # k -> task -> AtK
    mean_cost_usd: float | None = None
    mean_working_s: float | None = None
    origin: int | None = None  # the index of its submission in Board.submissions
    curves: list[ScoreCurve] = field(default_factory=list)  # human rows: validation scores

    def score_at(self, k: int, tasks: Sequence[str]) -> float | None:
        """score@k over all `tasks` (their mean), None when some task lacks it."""
        cells = self.at_k.get(k, {})
        if not tasks or any(task not in cells for task in tasks):
            return None
        return statistics.fmean(cells[task].score for task in tasks)

    def working_at(self, k: int, tasks: Sequence[str]) -> float | None:
        """The total working time of score@k's runs over all `tasks`."""
        cells = self.at_k.get(k, {})
        if not tasks or any(cells.get(task) is None for task in tasks):
            return None
        times = [cells[task].total_working_s for task in tasks]
        return None if any(time is None for time in times) else sum(t or 0.0 for t in times)


@dataclass
class Board:
    """Everything the leaderboard shows."""

    tasks: list[str]
    rows: list[BoardRow]  # verified submissions, the reference and human rows
    apart: list[BoardRow]  # unverified and rejected submissions, shown apart and marked
    submissions: list[Submission]
    budgets: dict[str, float]  # task -> working seconds of one run of score@k's budget

    @property
    def all_rows(self) -> list[BoardRow]:
        """The rows of both tables."""
        return [*self.rows, *self.apart]


def episode_score(submission: Submission, episode: SubmissionEpisode) -> float | None:
    """The episode's normalized score as the board counts it: the verifier's re-graded
    score when the submission was verified, else the claimed one; None when not scored."""
    result = episode.result
    if not result.scored:
        return None
    if submission.verified is not None:
        for regraded in submission.verified.episodes:
            if regraded.episode_id == episode.episode_id and \
                    regraded.regraded_normalized is not None:
                return regraded.regraded_normalized
    return result.normalized_score


def best_of(scores: Sequence[float], m: int) -> float:
    """The expected best of `m` runs drawn without replacement from `scores` (unbiased for
    the best of m fresh runs; the same estimator as pass@k, for scores)."""
    n = len(scores)
    if not 1 <= m <= n:
        raise ValueError(f"best of {m} needs 1 <= m <= {n} runs")
    ordered = sorted(scores)
    total = math.comb(n, m)
    return sum(score * math.comb(i, m - 1) for i, score in enumerate(ordered)) / total


def slug(text: str) -> str:
    """`text` made safe for a file name and an HTML id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def aggregate(submissions: list[Submission]) -> Board:
    """The board of `submissions`: rows per submission and agent, a reference row, human
    rows; the verified in `rows`, the others in `apart`."""
    rows: list[BoardRow] = []
    for origin, submission in enumerate(submissions):
        groups: dict[str, list[SubmissionEpisode]] = {}
        for episode in submission.episodes:
            groups.setdefault(agent_label(episode.result), []).append(episode)
        for agent, episodes in sorted(groups.items()):
            kind: RowKind = "human" if episodes[0].result.agent == HUMAN_AGENT else "agent"
            row = BoardRow(key=_unique(slug(f"{submission.name}--{agent}"), rows),
                           submission=submission.name, agent=agent, kind=kind,
                           status=submission.status, origin=origin)
            _fill(row, submission, episodes)
            rows.append(row)
    tasks = sorted({task for row in rows for task in row.tasks})
    budgets = _budgets(rows, tasks)
    for row in rows:
        _overall(row, tasks)
        _score_at_k(row, budgets)
    verified = [row for row in rows if row.status in LISTED]
    apart = [row for row in rows if row.status not in LISTED]
    main = [_reference_row(tasks), *verified] if tasks else verified
    return Board(tasks=tasks, rows=main, apart=apart, submissions=submissions,
                 budgets=budgets)


def _unique(key: str, rows: list[BoardRow]) -> str:
    taken = {row.key for row in rows}
    candidate, number = key, 2
    while candidate in taken:
        candidate, number = f"{key}-{number}", number + 1
    return candidate


def _fill(row: BoardRow, submission: Submission, episodes: list[SubmissionEpisode]) -> None:
    by_task: dict[str, list[tuple[SubmissionEpisode, float]]] = {}
    for episode in episodes:
        score = episode_score(submission, episode)
        if score is not None:
            by_task.setdefault(episode.result.task_id, []).append((episode, score))
    for task, scored in sorted(by_task.items()):
        scores = [score for _, score in scored]
        interval = bootstrap_interval(scores)
        row.tasks[task] = TaskCell(
            task_id=task, n=len(scores), mean=statistics.fmean(scores),
            low=interval[0] if interval else None, high=interval[1] if interval else None,
            mean_cost_usd=statistics.fmean(e.result.usage.cost_usd for e, _ in scored),
            mean_working_s=statistics.fmean(e.result.working_s for e, _ in scored),
            scores=tuple(scores), working_s=tuple(e.result.working_s for e, _ in scored),
            episodes=tuple(e.episode_id for e, _ in scored),
        )
    counted = [(e, s) for pairs in by_task.values() for e, s in pairs]
    if counted:
        row.mean_cost_usd = statistics.fmean(e.result.usage.cost_usd for e, _ in counted)
        row.mean_working_s = statistics.fmean(e.result.working_s for e, _ in counted)
    if row.kind == "human":
        row.curves = [curve for e, _ in counted if (curve := score_curve(e)).points]


def score_curve(episode: SubmissionEpisode) -> ScoreCurve:
    """The episode's validation scores against its working time. The working time is the
    score event's own (`working_s`, else `elapsed_working_s`), else its time since the
    episode's reset; an invalid submission counts 0, as on the scale."""
    start = next((_time(e.t) for e in episode.events if isinstance(e, ResetEvent)), None)
    points = []
    for event in episode.events:
        if not isinstance(event, ScoreEvent):
            continue
        working = getattr(event, "working_s", None)
        if working is None:
            working = event.elapsed_working_s
        if working is None and start is not None:
            working = (_time(event.t) - start).total_seconds()
        score = event.normalized_score if event.valid else 0.0
        if working is not None and score is not None:
            points.append((round(float(working), 3), float(score)))
    return ScoreCurve(episode_id=episode.episode_id, task_id=episode.result.task_id,
                      points=tuple(sorted(points)))


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _overall(row: BoardRow, tasks: list[str]) -> None:
    """The mean over every board task of the row's task means (None if it lacks a task)."""
    if not tasks or any(task not in row.tasks for task in tasks):
        return
    row.overall = statistics.fmean(row.tasks[task].mean or 0.0 for task in tasks)
    interval = stratified_bootstrap_interval([row.tasks[task].scores for task in tasks])
    if interval is not None:
        row.overall_low, row.overall_high = interval


def _budgets(rows: list[BoardRow], tasks: list[str]) -> dict[str, float]:
    """Per task, the working time of one run of the slowest row (score@k's unit budget)."""
    budgets = {}
    for task in tasks:
        times = [row.tasks[task].mean_working_s or 0.0 for row in rows if task in row.tasks]
        budgets[task] = max(times, default=0.0)
    return budgets


def _score_at_k(row: BoardRow, budgets: dict[str, float]) -> None:
    for k in KS:
        cells = {}
        for task, cell in row.tasks.items():
            if cell.n < k:
                continue  # the data do not allow it
            per_run = cell.mean_working_s or 0.0
            fits = math.floor(k * budgets[task] / per_run + 1e-9) if per_run > 0 else cell.n
            runs = min(cell.n, max(k, fits))
            cells[task] = AtK(k=k, score=best_of(cell.scores, runs), runs=runs,
                              total_working_s=runs * per_run, capped=fits > cell.n)
        if cells:
            row.at_k[k] = cells


def _reference_row(tasks: list[str]) -> BoardRow:
    """The tasks' expert reference solutions: 1.0 on every task by the scale's definition."""
    row = BoardRow(key="reference-solution", submission="reference solution",
                   agent="reference", kind="reference", status="reference")
    for task in tasks:
        row.tasks[task] = TaskCell(task_id=task, n=0, mean=1.0, low=None, high=None,
                                   mean_cost_usd=None, mean_working_s=None)
    row.overall = 1.0
    row.at_k = {k: {task: AtK(k=k, score=1.0, runs=None, total_working_s=None)
                    for task in tasks} for k in KS}
    return row
