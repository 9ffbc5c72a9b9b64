"""A team episode's workers as the checks read them: each worker's folder in the bundle
(`workers/<i>/`), its transcript's events and its final workspace archive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rdbench.records import Event, RecordError
from rdbench.submission import WORKERS
from rdbench.transcript import TRANSCRIPT, WORKSPACE, read_events
from rdbench.verify_checks.base import BundleEpisode


@dataclass(frozen=True)
class WorkerFiles:
    """One worker of a team episode: its index, folder and what it holds."""

    index: int
    folder: Path

    @property
    def where(self) -> str:
        """The worker's folder as a path in the episode's folder (`workers/<i>`)."""
        return f"{WORKERS}/{self.index}"

    @property
    def transcript(self) -> Path:
        """Its transcript.jsonl (it may be missing)."""
        return self.folder / TRANSCRIPT

    @property
    def workspace(self) -> Path | None:
        """Its final workspace archive, None when it left none."""
        archive = self.folder / WORKSPACE
        return archive if archive.is_file() else None

    def events(self) -> list[Event]:
        """Its transcript's events (RecordError when missing or unreadable)."""
        if not self.transcript.is_file():
            raise RecordError(f"{self.where}/{TRANSCRIPT} is missing")
        return read_events(self.folder)


def team_workers(episode: BundleEpisode) -> list[WorkerFiles]:
    """The workers a team episode's result declares (none for a single-agent episode), each
    at `workers/<i>/` in the episode's folder (whether or not the bundle holds it)."""
    team = episode.result.team
    count = team.workers if team is not None else 0
    return [WorkerFiles(index, episode.folder / WORKERS / str(index)) for index in range(count)]
