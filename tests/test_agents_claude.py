"""The claude adapter: the real `anthropic` SDK over HTTP against a fake Messages API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from fake_servers import (
    FakeServer,
    anthropic_error,
    anthropic_message,
    text,
    tool_use,
)
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.agents import AgentConfigError, AgentError, TaskInfo, make_agent
from rdbench.agents.claude import DEFAULT_MODEL, ClaudeAgent
from rdbench.agents.pricing import PRICES
from rdbench.cli import app
from rdbench.task import load_task
from rdbench.tools import tool_definitions


def make_claude(server: FakeServer, **options: Any) -> ClaudeAgent:
    options = {"base_url": server.url, "retry_base_delay": 0.01, **options}
    return make_agent("claude", **options)  # type: ignore[return-value]


def task_info(tools: list[str] | None = None, **budget: Any) -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(tools), budget)


def test_missing_key_fails_at_once_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AgentConfigError, match="ANTHROPIC_API_KEY is not set"):
        make_agent("claude")


def test_missing_key_fails_the_run_command_before_any_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    try:
        result = CliRunner().invoke(
            app, ["run", "--task", str(TOY_TASK), "--agent", "claude", "--out", str(tmp_path)]
        )
    finally:
        structlog.reset_defaults()  # the CLI logged to CliRunner's stream, now closed
    assert result.exit_code == 1
    assert "ANTHROPIC_API_KEY is not set" in result.output
    assert not any(tmp_path.iterdir())


def test_tools_become_definitions_with_cache_breakpoints(server: FakeServer) -> None:
    server.add(anthropic_message(tool_use("bash", {"command": "ls"})))
    agent = make_claude(server)
    agent.reset(task_info(), "the briefing")
    assert agent.act("the briefing") == {"tool": "bash", "input": {"command": "ls"}}
    request = server.requests[0]
    assert request.path == "/v1/messages"
    sent_key = request.headers.get("x-api-key") or request.headers.get("authorization")
    assert sent_key in ("test-key", "Bearer test-key")
    body = request.body
    assert [tool["name"] for tool in body["tools"]] == [t["name"] for t in tool_definitions()]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["tools"][0]
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][0]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][0]["content"][0]["text"] == "the briefing"


def test_all_tool_calls_of_a_reply_are_run_and_answered_together(server: FakeServer) -> None:
    first, second = tool_use("read_file", {"path": "a"}), tool_use("bash", {"command": "ls"})
    server.add(anthropic_message(text("two things"), first, second),
               anthropic_message(tool_use("submit")))
    agent = make_claude(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief")["tool"] == "read_file"
    assert agent.act("content of a")["tool"] == "bash"
    assert len(server.requests) == 1  # the second call came from the same reply
    assert agent.act("exit code: 0")["tool"] == "submit"
    messages = server.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    results = messages[2]["content"]
    assert [(r["tool_use_id"], r["content"]) for r in results] == [
        (first["id"], "content of a"), (second["id"], "exit code: 0")
    ]
    assert results[-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in results[0]


def test_usage_and_cost_are_what_the_server_reported(server: FakeServer) -> None:
    server.add(
        anthropic_message(tool_use("bash", {"command": "ls"}), input_tokens=1000,
                          output_tokens=200, cache_write=3000),
        anthropic_message(tool_use("submit"), input_tokens=50, output_tokens=30,
                          cache_read=3000, cache_write=500),
    )
    agent = make_claude(server)
    agent.reset(task_info(), "brief")
    agent.act("brief")
    agent.act("ok")
    usage = agent.usage()
    assert (usage.input_tokens, usage.output_tokens) == (1050, 230)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (3000, 3500)
    assert usage.requests == 2
    assert usage.total_tokens == 1050 + 230 + 3000 + 3500
    expected = PRICES[DEFAULT_MODEL].cost(input_tokens=1050, output_tokens=230,
                                          cache_read_tokens=3000, cache_write_tokens=3500)
    assert usage.cost_usd == pytest.approx(expected) and expected > 0


def test_529_and_429_with_retry_after_are_retried(server: FakeServer) -> None:
    server.add(
        anthropic_error(529, "overloaded_error", "Overloaded"),
        anthropic_error(429, "rate_limit_error", "slow down", retry_after="1"),
        anthropic_message(tool_use("submit")),
    )
    agent = make_claude(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief")["tool"] == "submit"
    assert len(server.requests) == 3  # exactly one retry layer: the SDK does not retry
    usage = agent.usage()
    assert usage.retries == 2 and usage.requests == 1
    assert 1.0 <= usage.retry_wait_s < 1.5  # the 429's retry-after was honoured


def test_retries_running_out_is_an_agent_error(server: FakeServer) -> None:
    server.add(*[anthropic_error(500, "api_error", "boom")] * 3)
    agent = make_claude(server, max_retries=2)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match="failed after 2 retries"):
        agent.act("brief")
    assert len(server.requests) == 3


def test_a_bad_request_is_not_retried(server: FakeServer) -> None:
    server.add(anthropic_error(400, "invalid_request_error", "bad tool schema"))
    agent = make_claude(server)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match="bad tool schema"):
        agent.act("brief")
    assert len(server.requests) == 1


def test_reply_without_tool_call_is_nudged(server: FakeServer) -> None:
    server.add(anthropic_message(text("thinking aloud")), anthropic_message(tool_use("submit")))
    agent = make_claude(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief")["tool"] == "submit"
    last = server.requests[1].body["messages"][-1]
    assert last["role"] == "user" and "without calling a tool" in last["content"][0]["text"]


def test_near_the_context_limit_old_turns_are_dropped_and_notepad_reshown(
    server: FakeServer,
) -> None:
    big = "x" * 2000
    server.add(
        anthropic_message(tool_use("notepad", {"content": "plan: print 5"}), input_tokens=300),
        anthropic_message(tool_use("bash", {"command": "cat big"}), input_tokens=700),
        anthropic_message(tool_use("bash", {"command": "ls"}), input_tokens=2900),
        anthropic_message(tool_use("submit"), input_tokens=900),
    )
    agent = make_claude(server, context_limit=3000, trim_at=0.8, scaffold="notepad")
    agent.reset(task_info(["bash", "submit"]), "brief")
    assert agent.act("brief")["input"] == {"command": "cat big"}  # the notepad needs no step
    agent.act(big)
    assert agent.act(big)["tool"] == "submit"
    sent = server.requests[3].body["messages"]
    first = sent[0]["content"][0]["text"]
    assert first.startswith("brief") and "earlier messages were removed" in first
    assert len(sent) < len(server.requests[2].body["messages"]) + 2
    assert sent[-1]["role"] == "user" and sent[1]["role"] == "assistant"
    assert sent[-1]["content"][-1]["text"] == "Your notepad:\nplan: print 5"
    assert agent.usage().extra["scaffold"] == {"notepad": 1, "trim": 1}


def test_prompt_too_long_error_trims_and_tries_again(server: FakeServer) -> None:
    server.add(
        anthropic_message(tool_use("bash", {"command": "a"})),
        anthropic_message(tool_use("bash", {"command": "b"})),
        anthropic_error(400, "invalid_request_error", "prompt is too long: 250000 tokens"),
        anthropic_message(tool_use("submit")),
    )
    agent = make_claude(server, context_limit=1000)
    agent.reset(task_info(), "brief")
    agent.act("brief")
    agent.act("y" * 3000)
    assert agent.act("z" * 3000)["tool"] == "submit"
    assert len(server.requests[3].body["messages"]) < len(server.requests[2].body["messages"])


def test_thinking_option_is_sent_and_thinking_blocks_go_back(server: FakeServer) -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    server.add(anthropic_message(thinking, tool_use("bash", {"command": "ls"})),
               anthropic_message(tool_use("submit")))
    agent = make_claude(server, thinking=2048, max_tokens=4096)
    agent.reset(task_info(), "brief")
    agent.act("brief")
    agent.act("ok")
    assert server.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert server.requests[0].body["max_tokens"] == 4096
    assert server.requests[1].body["messages"][1]["content"][0] == thinking


def test_thinking_budget_must_fit_under_max_tokens(server: FakeServer) -> None:
    with pytest.raises(AgentConfigError, match="thinking budget"):
        make_claude(server, thinking=8000, max_tokens=4000)


def test_adaptive_thinking_is_sent_as_asked(server: FakeServer) -> None:
    server.add(anthropic_message(tool_use("submit")))
    agent = make_claude(server, thinking="adaptive")
    agent.reset(task_info(), "brief")
    agent.act("brief")
    assert server.requests[0].body["thinking"] == {"type": "adaptive"}


def test_unpriced_model_with_a_cost_budget_is_refused(server: FakeServer) -> None:
    agent = make_claude(server, model="claude-unknown-9")
    with pytest.raises(AgentError, match="No price is known"):
        agent.reset(task_info(cost_usd=1.0), "brief")


def test_price_file_overrides_the_table(server: FakeServer, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"claude-unknown-9": {"input": 1.0, "output": 2.0}}))
    server.add(anthropic_message(tool_use("submit"), input_tokens=1_000_000,
                                 output_tokens=1_000_000))
    agent = make_claude(server, model="claude-unknown-9", price_file=str(prices))
    agent.reset(task_info(cost_usd=10.0), "brief")
    agent.act("brief")
    assert agent.usage().cost_usd == pytest.approx(3.0)
