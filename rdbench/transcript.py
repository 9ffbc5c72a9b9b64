"""The record an episode leaves: an append-only JSONL transcript and an atomic result.json."""

from __future__ import annotations

import errno
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

EventType = Literal[
    "reset", "action", "observation", "score", "usage", "error", "submit", "grade"
]
TRANSCRIPT = "transcript.jsonl"
RESULT = "result.json"
WORKSPACE = "workspace.tar.gz"


def now_iso() -> str:
    """The current UTC time in ISO 8601, as every record stamps it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Transcript:
    """Appends one JSON object a line to `<folder>/transcript.jsonl`, flushed as it happens."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / TRANSCRIPT
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, event_type: EventType, step: int, **fields: Any) -> None:
        """Append one event and flush it to disk."""
        record = {"t": now_iso(), "step": step, "type": event_type, **fields}
        self._file.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file; safe to call more than once."""
        if not self._file.closed:
            self._file.close()


def read_transcript(folder: str | Path) -> list[dict[str, Any]]:
    """Every event of the transcript in `folder` (a torn last line is skipped)."""
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
