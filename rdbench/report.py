"""The summary of a run: per task and agent, how many episodes were scored, their mean
normalized score with a 95% bootstrap interval, the best of them, mean cost and working time,
and how the others failed.

`load_run(folder)` reads every `<folder>/*/result.json` (a folder without one is an unfinished
episode), `summarize(...)` makes the rows (data, for tests and `--json`), `report_table(rows)`
renders them for people.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rdbench.records import EpisodeResult, RecordError, load_result

RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_011  # fixed, so the same results always print the same table
CONFIDENCE = 0.95
FAILURE_KINDS = ("agent_error", "infrastructure_error", "limit", "no_action")
"""Outcomes other than a clean submission, counted per row. An infrastructure error is never a
score; the other kinds are graded (their workspace still counts) and listed for the reader."""


class ReportRow(BaseModel):
    """One task-and-agent line of a run's summary."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    agent: str
    n: int  # scored episodes: graded, not an infrastructure failure
    mean: float | None
    low: float | None  # the 95% bootstrap interval; None when n < 2
    high: float | None
    best: float | None
    mean_cost_usd: float | None
    mean_working_s: float | None
    submitted: int
    failures: dict[str, int]  # FAILURE_KINDS -> count
    skipped: int  # finished in an earlier run (known only to the run that skipped them)
    unfinished: int  # a folder without result.json: started, never finished


@dataclass
class RunRecords:
    """What a run folder holds: the finished episodes' results and the unfinished folders."""

    results: list[EpisodeResult] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # episode folder names
    unreadable: list[str] = field(default_factory=list)  # one message each
    config: dict[str, Any] | None = None  # run.json, when the run saved one


def agent_label(result: EpisodeResult) -> str:
    """The agent as a summary names it: its arm's label when it ran for one (a sweep's
    arm), else its name, and its model when it has one."""
    if result.arm:
        return result.arm
    model = result.agent_options.get("model")
    return f"{result.agent}-{model}" if model else result.agent


def load_run(folder: str | Path) -> RunRecords:
    """Every episode record under the run folder `folder` (RecordError if it is no folder)."""
    root = Path(folder)
    if not root.is_dir():
        raise RecordError(f"{root}: not a run folder (give the --out folder of a run, e.g. "
                          "runs/NAME)")
    records = RunRecords()
    for episode in sorted(path for path in root.iterdir() if path.is_dir()):
        if episode.name.startswith("."):
            continue
        if not (episode / "result.json").exists():
            records.unfinished.append(episode.name)
            continue
        try:
            records.results.append(load_result(episode))
        except RecordError as error:
            records.unreadable.append(str(error))
    config = root / "run.json"
    if config.is_file():
        try:
            records.config = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            records.unreadable.append(f"{config}: not readable ({error})")
    return records


def bootstrap_interval(
    values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of `values` (None for fewer than two)."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    return _quantile(means, tail), _quantile(means, 1 - tail)


def stratified_bootstrap_interval(
    groups: Sequence[Sequence[float]], *, resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of the groups' means, each group
    resampled on its own (the leaderboard's overall score: tasks are fixed, runs vary). None
    when no group has two values; one group gives `bootstrap_interval`'s interval."""
    groups = [list(group) for group in groups if group]
    if not groups or all(len(group) < 2 for group in groups):
        return None
    rng = random.Random(seed)
    means = sorted(
        sum(sum(rng.choices(group, k=len(group))) / len(group) for group in groups)
        / len(groups)
        for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return _quantile(means, tail), _quantile(means, 1 - tail)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolating linearly between neighbours."""
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _episode_key(episode_id: str) -> str:
    """The task__agent part of an episode folder's name."""
    return "__".join(episode_id.split("__")[:2])


def summarize(
    results: Iterable[EpisodeResult], unfinished: Iterable[str] = (),
    skipped: Iterable[str] = (),
) -> list[ReportRow]:
    """The summary rows of `results`, sorted by task and agent; `unfinished` are the names of
    episode folders without a result, `skipped` the ids of episodes an earlier run finished."""
    groups: dict[tuple[str, str], list[EpisodeResult]] = {}
    known: dict[str, tuple[str, str]] = {}
    for result in results:
        key = (result.task_id, agent_label(result))
        groups.setdefault(key, []).append(result)
        known[_episode_key(result.episode_id)] = key
    unfinished_by: dict[tuple[str, str], int] = {}
    for name in unfinished:
        parts = name.split("__")
        key = known.get(_episode_key(name), (parts[0], parts[1] if len(parts) > 1 else "?"))
        unfinished_by[key] = unfinished_by.get(key, 0) + 1
        groups.setdefault(key, [])
    skipped_ids = set(skipped)
    return [
        _row(task, agent, groups[(task, agent)], unfinished_by.get((task, agent), 0),
             skipped_ids)
        for task, agent in sorted(groups)
    ]


def _row(
    task: str, agent: str, results: list[EpisodeResult], unfinished: int, skipped: set[str],
) -> ReportRow:
    scored = [r for r in results if r.scored and r.normalized_score is not None]
    scores = [r.normalized_score for r in scored if r.normalized_score is not None]
    interval = bootstrap_interval(scores)
    return ReportRow(
        task_id=task,
        agent=agent,
        n=len(scores),
        mean=statistics.fmean(scores) if scores else None,
        low=interval[0] if interval else None,
        high=interval[1] if interval else None,
        best=max(scores) if scores else None,
        mean_cost_usd=statistics.fmean(r.usage.cost_usd for r in scored) if scored else None,
        mean_working_s=statistics.fmean(r.working_s for r in scored) if scored else None,
        submitted=sum(r.outcome == "submitted" for r in results),
        failures={kind: sum(r.outcome == kind for r in results) for kind in FAILURE_KINDS},
        skipped=sum(r.episode_id in skipped for r in results),
        unfinished=unfinished,
    )


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def _failures(row: ReportRow) -> str:
    names = {"agent_error": "agent error", "infrastructure_error": "infrastructure",
             "limit": "limit", "no_action": "no action"}
    shown = [f"{names[kind]} {count}" for kind, count in row.failures.items() if count]
    return ", ".join(shown) or "-"


def report_table(rows: Sequence[ReportRow], title: str = "run summary") -> Table:
    """The rows as a rich table (the mean's 95% bootstrap interval in brackets). The cost,
    skipped and unfinished columns appear only when some row has any, so that a run of
    agents without a model fits 80 columns."""
    extra = [name for name, present in (("skip", any(row.skipped for row in rows)),
                                        ("unfin.", any(row.unfinished for row in rows)))
             if present]
    costs = any(row.mean_cost_usd for row in rows)
    table = Table(title=title, box=box.SIMPLE_HEAD, caption="time: mean working seconds"
                  + ("; skip: finished in an earlier attempt" if "skip" in extra else "")
                  + ("; unfin.: no result yet" if "unfin." in extra else ""))
    table.add_column("task", overflow="fold", min_width=10)
    table.add_column("agent", overflow="fold", min_width=6)
    for name in ("n", "mean [95% CI]", "best", *(["cost $"] if costs else []), "time"):
        table.add_column(name, no_wrap=True, justify="left" if name.startswith("mean") else "right")
    table.add_column("failures", overflow="fold", min_width=8)
    for name in extra:
        table.add_column(name, no_wrap=True, justify="right")
    for row in rows:
        mean = _number(row.mean, ".3f")
        if row.low is not None and row.high is not None:
            mean += f" [{row.low:.3f}, {row.high:.3f}]"
        counts = {"skip": str(row.skipped), "unfin.": str(row.unfinished)}
        table.add_row(  # Text: names and numbers are shown as they are, never as markup
            Text(row.task_id), Text(row.agent), str(row.n), Text(mean), _number(row.best, ".3f"),
            *([_number(row.mean_cost_usd, ".4f")] if costs else []),
            _number(row.mean_working_s, ".1f"), _failures(row), *(counts[name] for name in extra),
        )
    return table


def rows_json(rows: Sequence[ReportRow]) -> str:
    """The rows as a JSON list (what `rdbench show --json` prints)."""
    return json.dumps([row.model_dump() for row in rows], indent=2)


def print_summary(console: Console, folder: str | Path, skipped: Iterable[str] = ()) -> None:
    """Print the summary table of the run in `folder` (what `rdbench show` and the end of
    `rdbench run` print); `skipped` are the episodes this run skipped (a progress observer's
    `tally.skipped_ids`)."""
    records = load_run(folder)
    rows = summarize(records.results, unfinished=records.unfinished, skipped=skipped)
    console.print(report_table(rows, title=f"run summary: {folder}"))
    if records.unfinished:
        console.print(f"{len(records.unfinished)} unfinished episode(s) (no result.json): "
                      "run the same command again to finish them", highlight=False)
    for problem in records.unreadable:
        console.print(Text(f"not counted: {problem}", style="yellow"))
