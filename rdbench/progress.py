"""Watching a run: a live terminal display, or JSON lines for machines (both `RunObserver`s).

`LiveProgress` shows a row per running episode (task, agent, seed, step, working time,
tokens, cost, latest validation score) above an overall bar with done/total and an ETA.
`JsonLinesProgress` writes one JSON object a line per event. Both take calls from several
threads at once (one per running episode). `make_observer` picks one.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rdbench.records import EpisodeResult
from rdbench.run_observer import EpisodeProgress, RunObserver


@dataclass
class _Running:
    """A running episode's row."""

    task_id: str
    agent: str
    seed: int
    started: float
    progress: EpisodeProgress | None = None


@dataclass
class RunTally:
    """How far a run is: episodes planned, done (finished, skipped) and how they ended."""

    total: int = 0
    finished: int = 0  # ran to the end in this run
    skipped: int = 0  # had finished in an earlier run
    outcomes: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    skipped_ids: set[str] = field(default_factory=set)  # for the summary's skipped column

    def count(self, result: EpisodeResult, skipped: bool) -> None:
        """Count an episode that ended (or was skipped)."""
        if skipped:
            self.skipped += 1
            self.skipped_ids.add(result.episode_id)
        else:
            self.finished += 1
            self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1

    @property
    def done(self) -> int:
        """Episodes that need no more work."""
        return self.finished + self.skipped

    def eta_s(self, now: float) -> float | None:
        """Seconds until every episode is done, at the pace of the episodes run so far (skipped
        ones take no time, so they do not count in the pace); None before the first ends."""
        if self.finished == 0:
            return None
        remaining = max(self.total - self.done, 0)
        return (now - self.started) / self.finished * remaining


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class LiveProgress:
    """A rich Live display of a run: a row per running episode and an overall bar."""

    def __init__(self, console: Console, refresh_per_second: float = 4):
        self.console = console
        self.tally = RunTally()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._live = Live(console=console, refresh_per_second=refresh_per_second,
                          get_renderable=self.render, transient=False)

    def run_started(self, episodes: int) -> None:
        """Start the display with `episodes` planned."""
        with self._lock:
            self.tally = RunTally(total=episodes)
        self._live.start()

    def episode_started(self, episode_id: str, task_id: str, agent: str, seed: int) -> None:
        """Add the episode's row."""
        with self._lock:
            self._running[episode_id] = _Running(task_id, agent, seed, time.monotonic())

    def episode_progress(self, progress: EpisodeProgress) -> None:
        """Update the episode's row."""
        with self._lock:
            running = self._running.get(progress.episode_id)
            if running is None:  # progress before (or without) a start: make the row
                running = _Running(progress.task_id, progress.agent, progress.seed,
                                   time.monotonic())
                self._running[progress.episode_id] = running
            running.progress = progress

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """Remove the episode's row and count it (as skipped, or by its outcome)."""
        with self._lock:
            self._running.pop(result.episode_id, None)
            self.tally.count(result, skipped)

    def run_finished(self) -> None:
        """Draw the last state and stop the display."""
        self._live.refresh()
        self._live.stop()

    def render(self) -> RenderableType:
        """The display as it is now (what Live draws a few times a second)."""
        with self._lock:
            rows = [(episode_id, running, running.progress)
                    for episode_id, running in self._running.items()]
            tally = RunTally(self.tally.total, self.tally.finished, self.tally.skipped,
                             dict(self.tally.outcomes), self.tally.started)
        table = Table(title=f"running episodes ({len(rows)})", expand=False)
        for column in ("task", "agent", "seed", "step", "working", "tokens", "cost $",
                       "score"):
            table.add_column(column, no_wrap=True,
                             justify="left" if column in ("task", "agent") else "right")
        for _, running, progress in rows:
            table.add_row(
                Text(running.task_id), Text(running.agent), str(running.seed),
                str(progress.step) if progress else "-",
                _duration(progress.working_s if progress else None),
                f"{progress.tokens:,}" if progress else "-",
                f"{progress.cost_usd:.4f}" if progress else "-",
                "-" if progress is None or progress.last_score is None
                else f"{progress.last_score:.3f}",
            )
        return Group(table, self._overall(tally))

    def _overall(self, tally: RunTally) -> RenderableType:
        now = time.monotonic()
        bar = ProgressBar(total=max(tally.total, 1), completed=tally.done, width=40)
        line = Text(f" {tally.done}/{tally.total} done")
        if tally.skipped:
            line.append(f" ({tally.skipped} skipped: finished earlier)")
        failed = {kind: count for kind, count in tally.outcomes.items() if kind != "submitted"}
        if failed:
            line.append(" · " + ", ".join(f"{kind} {count}" for kind, count in failed.items()))
        line.append(f" · elapsed {_duration(now - tally.started)}"
                    f" · ETA {_duration(tally.eta_s(now))}")
        grid = Table.grid()
        grid.add_row(bar, line)
        return grid


class JsonLinesProgress:
    """A run's events as JSON lines (structlog), one line per event, for machines."""

    def __init__(self, file: TextIO | None = None):
        self.tally = RunTally()
        self._lock = threading.Lock()
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(file or sys.stderr),
            wrapper_class=structlog.BoundLogger,  # not the CLI's level filter: every event
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso"),
                        structlog.processors.JSONRenderer()],
        )

    def _emit(self, event: str, **fields: Any) -> None:
        with self._lock:  # one whole line at a time, whatever thread calls
            self._log.info(event, **fields)

    def run_started(self, episodes: int) -> None:
        """Log `run.started`."""
        with self._lock:
            self.tally = RunTally(total=episodes)
        self._emit("run.started", episodes=episodes)

    def episode_started(self, episode_id: str, task_id: str, agent: str, seed: int) -> None:
        """Log `episode.started`."""
        self._emit("episode.started", episode=episode_id, task=task_id, agent=agent, seed=seed)

    def episode_progress(self, progress: EpisodeProgress) -> None:
        """Log `episode.progress` with the step's numbers."""
        self._emit("episode.progress", episode=progress.episode_id, task=progress.task_id,
                   agent=progress.agent, seed=progress.seed, step=progress.step,
                   working_s=round(progress.working_s, 3), tokens=progress.tokens,
                   cost_usd=progress.cost_usd, last_score=progress.last_score)

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """Log `episode.finished` (or `episode.skipped`) with the outcome and done/total."""
        with self._lock:
            self.tally.count(result, skipped)
            done, total = self.tally.done, self.tally.total
            eta = self.tally.eta_s(time.monotonic())
        self._emit("episode.skipped" if skipped else "episode.finished",
                   episode=result.episode_id, task=result.task_id, agent=result.agent,
                   seed=result.seed, outcome=result.outcome,
                   normalized_score=result.normalized_score, steps=result.steps,
                   working_s=result.working_s, cost_usd=result.usage.cost_usd,
                   done=done, total=total, eta_s=None if eta is None else round(eta, 1))

    def run_finished(self) -> None:
        """Log `run.finished` with the counts."""
        with self._lock:
            tally = self.tally
            fields = {"done": tally.done, "total": tally.total, "skipped": tally.skipped,
                      "elapsed_s": round(time.monotonic() - tally.started, 3)}
        self._emit("run.finished", **fields)


def make_observer(console: Console, log_json: bool) -> RunObserver:
    """The live display on a terminal; JSON lines (on stderr) without one or with log_json."""
    if log_json or not console.is_terminal:
        return JsonLinesProgress()
    return LiveProgress(console)
