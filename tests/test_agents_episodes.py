"""Whole episodes through the runner with real agents: budgets, agent failures, usage records.

The claude episodes run the real `anthropic` SDK against the fake Messages API on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_servers import FakeServer, anthropic_error, anthropic_message, tool_use
from helpers import TOY_TASK

from rdbench.agents.claude import DEFAULT_MODEL
from rdbench.agents.pricing import PRICES
from rdbench.records import EpisodeResult, load_result
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.transcript import read_transcript

pytestmark = pytest.mark.docker

WRITE_3 = {"path": "answer.py", "content": "print(3)\n"}


def claude_episode(
    server: FakeServer, out: Path, budget: dict[str, Any] | None = None, **options: Any
) -> EpisodeResult:
    spec = EpisodeSpec(
        task=load_task(TOY_TASK), agent="claude", budget=budget or {},
        agent_options={"base_url": server.url, "retry_base_delay": 0.01, **options},
    )
    return run_episode(spec, out)


def episode_folder(out: Path) -> Path:
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return folder


def test_claude_episode_reads_edits_scores_and_submits(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    edit = {"path": "answer.py", "old_string": "print(1)", "new_string": "print(4)"}
    server.add(
        anthropic_message(tool_use("read_file", {"path": "answer.py"}), input_tokens=1200,
                          output_tokens=40, cache_write=2000),
        anthropic_message(tool_use("edit_file", edit), tool_use("score"), input_tokens=300,
                          output_tokens=60, cache_read=2000, cache_write=400),
        anthropic_message(tool_use("submit"), input_tokens=200, output_tokens=10,
                          cache_read=2400),
    )
    result = claude_episode(server, tmp_path)
    assert result.raw_score == 4.0 and result.normalized_score == pytest.approx(0.75)
    assert result.terminated and result.outcome == "submitted"
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens) == (1700, 110)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (4400, 2400)
    assert usage.requests == 3
    expected = PRICES[DEFAULT_MODEL].cost(input_tokens=1700, output_tokens=110,
                                          cache_read_tokens=4400, cache_write_tokens=2400)
    assert usage.cost_usd == pytest.approx(expected, abs=1e-6)
    assert load_result(episode_folder(tmp_path)) == result
    # the model saw the file it read, and both calls of the second reply were answered
    second = server.requests[1].body["messages"][-1]["content"]
    assert "print(1)" in second[0]["content"]
    third = server.requests[2].body["messages"][-1]["content"]
    assert [block["type"] for block in third] == ["tool_result", "tool_result"]
    assert "replaced 1 occurrence" in third[0]["content"]
    assert "Validation score: 4.5" in third[1]["content"]
    events = read_transcript(episode_folder(tmp_path))
    kinds = [event["type"] for event in events]
    assert kinds.count("usage") == 4  # after each of the 3 replies, then the total
    assert "score" in kinds and kinds[-1] == "usage"


def test_token_budget_ends_the_episode_truncated_and_graded(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    server.add(
        anthropic_message(tool_use("write_file", WRITE_3), input_tokens=500, output_tokens=100),
        anthropic_message(tool_use("bash", {"command": "true"}), input_tokens=500,
                          output_tokens=100),
        anthropic_message(tool_use("bash", {"command": "true"})),
    )
    result = claude_episode(server, tmp_path, budget={"tokens": 1000})
    assert result.truncated and not result.terminated
    assert result.limit_hit == "tokens" and result.outcome == "limit"
    assert result.raw_score == 3.0 and result.steps == 2
    assert result.usage.total_tokens == 1200


def test_cost_budget_ends_the_episode_truncated_and_graded(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    server.add(
        anthropic_message(tool_use("write_file", WRITE_3), input_tokens=10_000,
                          output_tokens=1000),
        anthropic_message(tool_use("bash", {"command": "true"})),
    )
    cost = PRICES[DEFAULT_MODEL].cost(input_tokens=10_000, output_tokens=1000)
    result = claude_episode(server, tmp_path, budget={"cost_usd": cost / 2})
    assert result.truncated and result.limit_hit == "cost"
    assert result.raw_score == 3.0 and result.steps == 1
    assert result.usage.cost_usd == pytest.approx(cost, abs=1e-6)


def test_retry_waits_do_not_count_as_working_time(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    server.add(
        anthropic_error(429, "rate_limit_error", "slow down", retry_after="2"),
        anthropic_message(tool_use("write_file", WRITE_3)),
        anthropic_message(tool_use("submit")),
    )
    result = claude_episode(server, tmp_path, budget={"time_s": 1.5})
    assert result.terminated and result.limit_hit is None
    assert result.usage.retry_wait_s >= 2.0
    assert result.working_s < result.elapsed_s - 2.0
    assert result.raw_score == 3.0


def scripted_episode(out: Path, budget: dict[str, Any], **options: Any) -> EpisodeResult:
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="agents_for_tests:Scripted",
                       budget=budget, agent_options=options)
    return run_episode(spec, out)


def test_step_budget_ends_the_episode_truncated_and_graded(
    tmp_path: Path, sandbox_image: str
) -> None:
    result = scripted_episode(tmp_path, {"steps": 3})
    assert result.truncated and result.limit_hit == "steps"
    assert result.steps == 3 and result.raw_score == 3.0


def test_time_budget_ends_the_episode_truncated_and_graded(
    tmp_path: Path, sandbox_image: str
) -> None:
    result = scripted_episode(tmp_path, {"time_s": 1.0}, command="sleep 0.6")
    assert result.truncated and result.limit_hit == "time"
    assert result.raw_score == 3.0 and result.working_s >= 1.0


def test_agent_that_raises_ends_the_episode_and_it_is_still_graded(
    tmp_path: Path, sandbox_image: str
) -> None:
    result = scripted_episode(tmp_path, {}, crash_after=2)
    assert result.outcome == "agent_error" and result.truncated
    assert "the agent's own bug" in result.agent_error
    assert result.raw_score == 3.0 and result.normalized_score == pytest.approx(0.5)
    assert result.infrastructure_error is None
    events = read_transcript(episode_folder(tmp_path))
    errors = [event for event in events if event["type"] == "error"]
    assert errors and "the agent's own bug" in errors[0]["message"]
    assert events[-1]["type"] == "usage"


def test_claude_failing_after_retries_ends_the_episode_graded(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    server.add(anthropic_message(tool_use("write_file", WRITE_3)),
               *[anthropic_error(529, "overloaded_error", "Overloaded")] * 2)
    result = claude_episode(server, tmp_path, max_retries=1)
    assert result.outcome == "agent_error"
    assert "failed after 1 retries" in result.agent_error
    assert result.raw_score == 3.0


def test_tool_set_and_notepad_are_chosen_per_run(tmp_path: Path, sandbox_image: str) -> None:
    actions = [{"tool": "notepad", "input": {"content": "remember: 3"}},
               {"tool": "read_file", "input": {"path": "answer.py"}}]
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="agents_for_tests:Actions",
                       agent_options={"actions": actions}, tools=["bash", "notepad"])
    run_episode(spec, tmp_path)
    events = read_transcript(episode_folder(tmp_path))
    assert events[0]["tools"] == ["bash", "notepad", "submit"]
    observations = [event["text"] for event in events if event["type"] == "observation"]
    assert observations[0] == "Notepad saved (11 characters)."
    assert "Unknown tool 'read_file'" in observations[1]
