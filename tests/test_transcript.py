"""Records: events appended as they happen, result.json written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdbench.records import ObservationEvent, RecordError, ResetEvent
from rdbench.transcript import (
    Transcript,
    read_events,
    read_transcript,
    write_json_atomic,
)


def test_events_are_on_disk_before_close(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("action", 1, tool="bash")
    lines = (tmp_path / "transcript.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["tool"] == "bash"
    transcript.write("observation", 1, text="hi")
    transcript.close()
    events = read_events(tmp_path)
    assert [e.type for e in events] == ["action", "observation"]
    assert all(e.t and e.step == 1 and e.v == 1 for e in events)
    assert isinstance(events[1], ObservationEvent) and events[1].text == "hi"


def test_read_transcript_still_gives_dicts_for_old_readers(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("observation", 2, text="hi", shown="h", truncated=True)
    transcript.close()
    (event,) = read_transcript(tmp_path)
    assert event["type"] == "observation" and event["shown"] == "h" and event["truncated"]


def reset_fields() -> dict[str, object]:
    return {"task_id": "toy-task", "seed": 0, "tools": ["bash", "submit"]}


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("reset", 0, **reset_fields())
    transcript.close()
    with (tmp_path / "transcript.jsonl").open("a") as file:
        file.write('{"t": "2026-')
    assert [e["type"] for e in read_transcript(tmp_path)] == ["reset"]
    (event,) = read_events(tmp_path)
    assert isinstance(event, ResetEvent) and event.tools == ["bash", "submit"]


def test_a_broken_line_before_the_last_is_an_error_naming_it(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    transcript.write("submit", 1)
    transcript.close()
    with (tmp_path / "transcript.jsonl").open("a") as file:
        file.write('{"type": "submit"}\n{"t": "2026-01-01", "step": 1, "type": "submit"}\n')
    with pytest.raises(RecordError, match=r"transcript.jsonl:2: not a transcript event"):
        read_events(tmp_path)


def test_an_unknown_field_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    transcript = Transcript(tmp_path)
    with pytest.raises(RecordError, match="is_eror"):
        transcript.write("observation", 1, text="hi", is_eror=True)
    transcript.close()
    assert (tmp_path / "transcript.jsonl").read_text() == ""


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("observation", {"text": 3}),  # a number where text goes
        ("observation", {"text": "hi", "exit_code": "3"}),  # a str where an int goes
        ("score", {"raw_score": "0.5", "valid": True}),
        ("reset", {"task_id": "toy-task", "seed": 0}),  # tools missing
        ("bogus", {}),  # no such event type
    ],
)
def test_a_wrong_type_or_missing_field_is_refused(
    tmp_path: Path, event_type: str, fields: dict[str, object]
) -> None:
    transcript = Transcript(tmp_path)
    with pytest.raises(RecordError, match="not a transcript event"):
        transcript.write(event_type, 1, **fields)  # type: ignore[arg-type]
    transcript.close()


def test_a_typed_event_is_appended_with_its_own_time(tmp_path: Path) -> None:
    event = ObservationEvent(t="2026-01-02T03:04:05.000+00:00", step=4, text="full",
                             shown="fu", truncated=True, tool="bash")
    transcript = Transcript(tmp_path)
    transcript.append(event)
    transcript.close()
    assert read_events(tmp_path) == [event]


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "result.json", {"a": 1})
    write_json_atomic(tmp_path / "result.json", {"a": 2})
    assert json.loads((tmp_path / "result.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
