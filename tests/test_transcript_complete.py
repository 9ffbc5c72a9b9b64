"""A whole Claude episode through the runner (the real `anthropic` SDK against the fake Messages
API on loopback, a real Docker sandbox): its transcript holds what a reader needs to follow it
(the system prompt, the instructions and tool definitions, the model's text and thinking,
each tool call and its observation, the validation score with its time, the final grade), and
`rdbench transcript` shows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_servers import FakeServer, text, thinking_reply, tool_use
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.records import (
    ActionEvent,
    GradeEvent,
    ModelReplyEvent,
    ModelRequestEvent,
    ObservationEvent,
    ResetEvent,
    ScoreEvent,
)
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.transcript import read_events

pytestmark = pytest.mark.docker

THOUGHT = "The answer file prints 1; the grader wants a bigger number."
SAID = "I will read answer.py, then make it print 4."


def test_the_transcript_holds_the_prompts_the_thinking_and_every_call(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    edit = {"path": "answer.py", "old_string": "print(1)", "new_string": "print(4)"}
    server.add(
        thinking_reply(THOUGHT, text(SAID), tool_use("read_file", {"path": "answer.py"})),
        thinking_reply("Now edit and check.", tool_use("edit_file", edit), tool_use("score")),
        thinking_reply("Scored; submit.", tool_use("submit")),
    )
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="claude", seed=7,
                       agent_options={"base_url": server.url, "thinking": 2048,
                                      "max_tokens": 4096})
    result = run_episode(spec, tmp_path)
    assert result.outcome == "submitted" and result.raw_score == 4.0
    folder = tmp_path / spec.episode_id
    events = read_events(folder)  # every line parses as a typed event

    (reset,) = [event for event in events if isinstance(event, ResetEvent)]
    assert reset.instructions == spec.task.instructions and reset.seed == 7
    assert {tool["name"] for tool in reset.tool_definitions} >= {"read_file", "submit"}
    requests = [event for event in events if isinstance(event, ModelRequestEvent)]
    assert requests[0].system and "submit" in requests[0].system  # the system prompt, once
    assert all(request.system is None for request in requests[1:])
    replies = [event for event in events if isinstance(event, ModelReplyEvent)]
    assert [reply.thinking for reply in replies] == [THOUGHT, "Now edit and check.",
                                                     "Scored; submit."]
    assert replies[0].text == SAID
    calls = [(event.tool, event.input) for event in events if isinstance(event, ActionEvent)]
    assert calls == [("read_file", {"path": "answer.py"}), ("edit_file", edit),
                     ("score", {}), ("submit", {})]
    read = next(event for event in events if isinstance(event, ObservationEvent))
    assert "print(1)" in read.text and read.tool == "read_file"
    (score,) = [event for event in events if isinstance(event, ScoreEvent)]
    assert score.raw_score == 4.5 and score.grading_s is not None and score.t
    (grade,) = [event for event in events if isinstance(event, GradeEvent)]
    assert grade.raw_score == 4.0

    shown = CliRunner().invoke(app, ["transcript", str(folder), "--full"])
    assert shown.exit_code == 0, shown.output
    words = " ".join(shown.output.split())  # the console wraps long lines
    for expected in (spec.task.instructions.splitlines()[0], requests[0].system.splitlines()[0],
                     THOUGHT, SAID, "read_file", "edit_file", "print(4)", "validation score",
                     "final grade"):
        assert " ".join(expected.split()) in words, expected
