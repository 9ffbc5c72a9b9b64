"""What a run tells whoever watches it (the live progress display, JSON log lines, tests).

The runner calls a `RunObserver` as episodes start, make progress and end; an observer must be
quick and must not raise (the runner logs and ignores an observer's error). Calls may come from
several threads at once (one per running episode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rdbench.records import EpisodeResult


@dataclass(frozen=True)
class EpisodeProgress:
    """A running episode's state after one of its steps."""

    episode_id: str
    task_id: str
    agent: str
    seed: int
    step: int
    working_s: float
    tokens: int
    cost_usd: float
    last_score: float | None  # the latest validation score (normalized), if any


class RunObserver(Protocol):
    """Receives a run's events."""

    def run_started(self, episodes: int) -> None:
        """The run begins, with this many episodes planned (skipped ones included)."""
        ...

    def episode_started(self, episode_id: str, task_id: str, agent: str, seed: int) -> None:
        """An episode's sandbox is starting."""
        ...

    def episode_progress(self, progress: EpisodeProgress) -> None:
        """An episode made a step."""
        ...

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """An episode ended (or was skipped: it had finished in an earlier run)."""
        ...

    def run_finished(self) -> None:
        """The run ended (all episodes done, or interrupted)."""
        ...


class NullObserver:
    """An observer that does nothing (the default)."""

    def run_started(self, episodes: int) -> None:
        """Nothing."""

    def episode_started(self, episode_id: str, task_id: str, agent: str, seed: int) -> None:
        """Nothing."""

    def episode_progress(self, progress: EpisodeProgress) -> None:
        """Nothing."""

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """Nothing."""

    def run_finished(self) -> None:
        """Nothing."""
