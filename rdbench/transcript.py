"""The record an episode leaves: an append-only JSONL transcript of typed events
(rdbench/records.py) and an atomic result.json."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rdbench.records import Event, RecordError, parse_event

EventType = Literal[
    "reset", "action", "observation", "score", "usage", "error", "submit", "grade",
    "model_request", "model_reply", "retry", "scaffold",
]
TRANSCRIPT = "transcript.jsonl"
RESULT = "result.json"
WORKSPACE = "workspace.tar.gz"


def now_iso() -> str:
    """The current UTC time in ISO 8601, as every record stamps it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Transcript:
    """Appends one typed event a line to `<folder>/transcript.jsonl`, on disk (flushed and
    fsynced) before `write` returns."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / TRANSCRIPT
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()  # whole lines, from any thread (a person's channel)

    def write(self, event_type: EventType, step: int, **fields: Any) -> Event:
        """Append one event of `event_type` (stamped with the time now) and return it.

        Raises RecordError, before anything is written, when `fields` do not make an event
        of that type (an unknown field, a missing one, a value of the wrong type).
        """
        event = parse_event({"t": now_iso(), "step": step, "type": event_type, **fields})
        self.append(event)
        return event

    def append(self, event: Event) -> None:
        """Append an event made elsewhere (it keeps its own time) and flush it to disk."""
        line = event.model_dump_json(fallback=str)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file; safe to call more than once."""
        if not self._file.closed:
            self._file.close()


def read_events(folder: str | Path) -> list[Event]:
    """Every event of the transcript in `folder`, typed. A torn last line (a write cut off
    by a crash) is skipped; any other line that is not an event raises RecordError."""
    path = Path(folder) / TRANSCRIPT
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise RecordError(f"{path}: cannot read the transcript ({error})") from error
    events = []
    for number, line in enumerate(lines, start=1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                continue  # torn by a crash mid-write
            raise RecordError(f"{path}:{number}: not a JSON line ({error})") from error
        try:
            events.append(parse_event(data))
        except RecordError as error:
            raise RecordError(f"{path}:{number}: {error}") from error
    return events


def read_transcript(folder: str | Path) -> list[dict[str, Any]]:
    """Every event of the transcript in `folder` as a plain dict (a torn last line is
    skipped); new readers use `read_events`, which gives typed events."""
    events = []
    for line in (Path(folder) / TRANSCRIPT).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never a part."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(data, file, indent=2, default=str)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, target)


def move_atomic(source: str | Path, path: str | Path) -> None:
    """Move the file `source` to `path` so a reader sees the old file or the new one, never
    a part: a rename, or (across filesystems) a streamed copy beside `path`, then a rename."""
    target = Path(path)
    try:
        os.replace(source, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    Path(source).unlink()
