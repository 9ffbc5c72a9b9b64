"""Records: events appended as they happen, result.json written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from rdbench.transcript import Transcript, read_transcript, write_json_atomic


def test_events_are_on_disk_before_close(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("action", 1, tool="bash")
    lines = (tmp_path / "transcript.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["tool"] == "bash"
    transcript.write("observation", 1, text="hi")
    transcript.close()
    events = read_transcript(tmp_path)
    assert [e["type"] for e in events] == ["action", "observation"]
    assert all("t" in e and e["step"] == 1 for e in events)


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("reset", 0)
    transcript.close()
    with (tmp_path / "transcript.jsonl").open("a") as file:
        file.write('{"t": "2026-')
    assert [e["type"] for e in read_transcript(tmp_path)] == ["reset"]


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "result.json", {"a": 1})
    write_json_atomic(tmp_path / "result.json", {"a": 2})
    assert json.loads((tmp_path / "result.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
