"""`rdbench transcript`: a readable replay of an episode's transcript.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import make_result
from rich.console import Console
from typer.testing import CliRunner

from rdbench import cli
from rdbench.records import (
    ActionEvent,
    ErrorEvent,
    GradeEvent,
    ModelReplyEvent,
    ModelRequestEvent,
    ObservationEvent,
    ResetEvent,
    RetryEvent,
    ScaffoldEvent,
    ScoreEvent,
    SubmitEvent,
    UsageEvent,
)

LONG_OUTPUT = "\n".join(f"output line {i}" for i in range(1, 101))


def t(seconds: int) -> str:
    return f"2026-03-01T10:00:{seconds:02d}.000+00:00"


EVENTS = [
    ResetEvent(t=t(0), step=0, task_id="tabular-credit", seed=3, tools=["bash", "score"],
               instructions="Make the model better.\nThe data is in data/.",
               budget={"steps": 20}, tool_definitions=[{"name": "bash"}, {"name": "score"}]),
    ModelRequestEvent(t=t(1), step=0, model="fake-model", system="You are a careful engineer.",
                      messages=[{"role": "user", "content": "Begin the task."}]),
    RetryEvent(t=t(2), step=0, attempt=1, wait_s=2.5, error="rate limited (429)"),
    ModelReplyEvent(t=t(5), step=0, model="fake-model", text="I will list the files first.",
                    thinking="The data folder probably holds a CSV.",
                    tool_calls=[{"id": "c1", "name": "bash", "input": {"command": "ls data"}}],
                    stop_reason="tool_use", usage={"input_tokens": 120, "output_tokens": 30},
                    latency_s=1.25),
    ScaffoldEvent(t=t(5), step=0, action="notepad", text="plan: try gradient boosting",
                  details={"input": {"content": "plan: try gradient boosting"}}),
    ScaffoldEvent(t=t(5), step=0, action="board_post", text="AUC 0.81 with depth 6", worker=2),
    UsageEvent(t=t(5), step=0, input_tokens=120, output_tokens=30, total_tokens=150,
               cost_usd=0.0012, requests=1, retries=1, retry_wait_s=2.5),
    ActionEvent(t=t(6), step=1, tool="bash", input={"command": "cat data/big.log"}),
    ObservationEvent(t=t(7), step=1, text=LONG_OUTPUT, shown=LONG_OUTPUT[:200], tool="bash",
                     exit_code=0, truncated=True),
    ActionEvent(t=t(8), step=2, raw="{not json"),
    ErrorEvent(t=t(8), step=2, message="the action is not valid JSON"),
    ActionEvent(t=t(9), step=3, tool="score", input={}),
    ScoreEvent(t=t(21), step=3, raw_score=0.81, normalized_score=0.42, valid=True,
               message="validation AUC 0.81", grading_s=11.5),
    ActionEvent(t=t(22), step=4, tool="submit", input={}),
    SubmitEvent(t=t(22), step=4),
    GradeEvent(t=t(40), step=4, raw_score=0.83, normalized_score=0.57, valid=True,
               message="test AUC 0.83", grading_s=17.0),
    ErrorEvent(t=t(41), step=4, message="sandbox vanished", infrastructure=True),
]


@pytest.fixture
def episode(tmp_path: Path) -> Path:
    folder = tmp_path / "run" / "tabular-credit__fake__seed3"
    folder.mkdir(parents=True)
    lines = [event.model_dump_json() for event in EVENTS]
    lines.insert(3, "{torn line")
    lines.insert(4, json.dumps({"t": t(3), "step": 0, "type": "telepathy", "what": "?"}))
    (folder / "transcript.jsonl").write_text("\n".join(lines) + "\n")
    result = make_result("tabular-credit", "fake", 3, "submitted", 0.57)
    (folder / "result.json").write_text(result.model_dump_json())
    return folder


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=160))


def transcript(*args: str) -> str:
    result = CliRunner().invoke(cli.app, ["transcript", *args])
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.splitlines()) + "\n"


def test_replay_shows_instructions_actions_and_the_model(episode: Path) -> None:
    out = transcript(str(episode))
    assert "episode: tabular-credit, seed 3" in out
    assert "Make the model better." in out
    assert "system prompt:" in out and "You are a careful engineer." in out
    assert "Begin the task." in out
    assert "I will list the files first." in out
    assert "thinking:" in out and "The data folder probably holds a CSV." in out
    assert "tool call bash" in out and "ls data" in out
    assert "▶ bash" in out and "command: cat data/big.log" in out
    assert "▶ score" in out and "▶ submit" in out
    assert "action (malformed)" in out and "{not json" in out
    assert "scaffold: notepad" in out and "plan: try gradient boosting" in out
    assert "scaffold: board_post (worker 2)" in out and "AUC 0.81 with depth 6" in out
    assert "retry 1 after 2.5s: rate limited (429)" in out


def test_long_observation_is_folded_unless_full(episode: Path) -> None:
    out = transcript(str(episode))
    assert "output line 1\n" in out and "output line 100" in out
    assert "output line 50\n" not in out
    assert "80 lines hidden" in out
    assert "agent saw 200 of" in out
    full = transcript(str(episode), "--full")
    assert "output line 50\n" in full and "lines hidden" not in full


def test_scores_with_their_times_usage_and_the_final_grade(episode: Path) -> None:
    out = transcript(str(episode))
    score = next(line for line in out.splitlines() if "validation score" in line)
    assert "0.420 (raw 0.81)" in score and "10:00:21 +21.0s" in score
    assert "graded in 11.5s" in out and "validation AUC 0.81" in out
    grade = next(line for line in out.splitlines() if "final grade 0.570" in line)
    assert "+40.0s" in grade
    assert "test AUC 0.83" in out
    assert "tokens 150 (in 120, out 30), cost $0.0012, requests 1" in out
    assert "retries 1 (waited 2.5s)" in out
    assert "infrastructure error" in out and "sandbox vanished" in out
    assert "result: submitted, normalized score 0.570" in out


def test_invalid_lines_are_shown_and_the_replay_goes_on(episode: Path) -> None:
    out = transcript(str(episode))
    assert "line 4: not JSON" in out and "{torn line" in out
    assert "line 5: unknown event type 'telepathy'" in out
    assert out.index("line 5:") < out.index("I will list the files first.")


def test_missing_transcript_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["transcript", str(tmp_path)])
    assert result.exit_code == 1
    assert "no transcript here" in result.output


def test_events_written_by_older_writers_and_bad_fields(tmp_path: Path) -> None:
    """Lines without the new fields (no v, no instructions) replay; a known type with a field
    it does not have is shown as invalid, with the field named."""
    lines = [
        {"t": t(0), "step": 0, "type": "reset", "task_id": "old-task", "seed": 0,
         "tools": ["bash"]},
        {"t": t(1), "step": 1, "type": "observation", "text": "hello from main"},
        {"t": t(2), "step": 1, "type": "action", "tool": "bash", "colour": "blue"},
    ]
    (tmp_path / "transcript.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    out = transcript(str(tmp_path))
    assert "episode: old-task, seed 0" in out and "hello from main" in out
    assert "line 3: not a valid 'action' event: colour: Extra inputs are not permitted" in out
    assert "no result.json: the episode did not finish" in out
