"""The openai adapter against a fake OpenAI-compatible chat-completions server on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_servers import (
    FakeServer,
    chat_completion,
    function_call,
    openai_error,
)
from helpers import TOY_TASK

from rdbench.agents import AgentConfigError, AgentError, TaskInfo, make_agent
from rdbench.agents.openai_compat import OpenAICompatAgent
from rdbench.agents.pricing import PRICES
from rdbench.records import load_result
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.tools import tool_definitions


def make_openai(server: FakeServer, **options: Any) -> OpenAICompatAgent:
    options = {"base_url": f"{server.url}/v1", "model": "local-model",
               "retry_base_delay": 0.01, **options}
    return make_agent("openai", **options)  # type: ignore[return-value]


def task_info(**budget: Any) -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(), budget)


def test_without_a_server_it_fails_at_once_and_says_how(server: FakeServer) -> None:
    with pytest.raises(AgentConfigError, match="--base-url"):
        make_agent("openai", model="m")
    with pytest.raises(AgentConfigError, match="--model"):
        make_agent("openai", base_url=server.url)


def test_tools_become_functions_and_calls_are_answered_together(server: FakeServer) -> None:
    first = function_call("read_file", {"path": "answer.py"})
    second = function_call("bash", {"command": "ls"})
    server.add(chat_completion(first, second), chat_completion(function_call("submit")))
    agent = make_openai(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief") == {"tool": "read_file", "input": {"path": "answer.py"}}
    assert agent.act("print(1)")["tool"] == "bash"
    assert agent.act("exit code: 0")["tool"] == "submit"
    assert len(server.requests) == 2
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert "authorization" not in request.headers  # a local server needs no key
    names = [tool["function"]["name"] for tool in request.body["tools"]]
    assert names == [t["name"] for t in tool_definitions()]
    messages = server.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["tool_calls"][0]["id"] == first["id"]
    assert [(m["tool_call_id"], m["content"]) for m in messages[3:]] == [
        (first["id"], "print(1)"), (second["id"], "exit code: 0")
    ]


def test_api_key_is_sent_when_set(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server.add(chat_completion(function_call("submit")))
    agent = make_openai(server)
    agent.reset(task_info(), "brief")
    agent.act("brief")
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_usage_counts_cached_prompt_tokens_as_cache_reads(server: FakeServer) -> None:
    server.add(
        chat_completion(function_call("bash", {"command": "ls"}), prompt_tokens=1000,
                        completion_tokens=50, cached_tokens=600),
        chat_completion(function_call("submit"), prompt_tokens=1200, completion_tokens=10),
    )
    agent = make_openai(server, model="gpt-4.1-mini")
    agent.reset(task_info(), "brief")
    agent.act("brief")
    agent.act("ok")
    usage = agent.usage()
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (1600, 600, 60)
    expected = PRICES["gpt-4.1-mini"].cost(input_tokens=1600, output_tokens=60,
                                           cache_read_tokens=600)
    assert usage.cost_usd == pytest.approx(expected)


def test_a_local_model_has_no_price_and_costs_nothing(server: FakeServer) -> None:
    server.add(chat_completion(function_call("submit")))
    agent = make_openai(server, model="qwen2.5-coder:7b")
    agent.reset(task_info(), "brief")
    agent.act("brief")
    assert agent.usage().cost_usd == 0.0 and agent.usage().input_tokens == 100


def test_529_and_429_with_retry_after_are_retried(server: FakeServer) -> None:
    server.add(openai_error(529, "overloaded"),
               openai_error(429, "rate limited", retry_after="1"),
               chat_completion(function_call("submit")))
    agent = make_openai(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief")["tool"] == "submit"
    usage = agent.usage()
    assert len(server.requests) == 3 and usage.retries == 2
    assert 1.0 <= usage.retry_wait_s < 1.5


def test_unreachable_server_fails_after_retries(server: FakeServer) -> None:
    agent = make_openai(server, base_url="http://127.0.0.1:9/v1", max_retries=1)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match="failed after 1 retries"):
        agent.act("brief")


def test_malformed_arguments_reach_the_env_as_an_error(server: FakeServer) -> None:
    server.add(chat_completion(function_call("bash", "{not json")))
    agent = make_openai(server)
    agent.reset(task_info(), "brief")
    assert agent.act("brief") == {"tool": "bash", "input": "{not json"}


def test_context_overflow_trims_and_tries_again(server: FakeServer) -> None:
    server.add(
        chat_completion(function_call("bash", {"command": "a"})),
        chat_completion(function_call("bash", {"command": "b"})),
        openai_error(400, "This model's maximum context length is 8192 tokens"),
        chat_completion(function_call("submit")),
    )
    agent = make_openai(server, context_limit=8192)
    agent.reset(task_info(), "brief")
    agent.act("brief")
    agent.act("y" * 3000)
    assert agent.act("z" * 3000)["tool"] == "submit"
    sent = server.requests[3].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[1]["content"].startswith("brief") and "removed" in sent[1]["content"]
    assert sent[3]["content"] == "z" * 3000


@pytest.mark.docker
def test_openai_episode_reads_edits_scores_and_submits(
    server: FakeServer, tmp_path: Path, sandbox_image: str
) -> None:
    edit = {"path": "answer.py", "old_string": "print(1)", "new_string": "print(4)"}
    server.add(
        chat_completion(function_call("read_file", {"path": "answer.py"}), prompt_tokens=900,
                        completion_tokens=30),
        chat_completion(function_call("edit_file", edit), function_call("score"),
                        prompt_tokens=1000, completion_tokens=40, cached_tokens=800),
        chat_completion(function_call("submit"), prompt_tokens=1100, completion_tokens=5,
                        cached_tokens=1000),
    )
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="openai", agent_options={
        "base_url": f"{server.url}/v1", "model": "gpt-4o-mini", "retry_base_delay": 0.01})
    result = run_episode(spec, tmp_path)
    assert result.raw_score == 4.0 and result.outcome == "submitted"
    usage = result.usage
    assert (usage.input_tokens, usage.cache_read_tokens) == (1200, 1800)
    assert usage.output_tokens == 75 and usage.requests == 3
    expected = PRICES["gpt-4o-mini"].cost(input_tokens=1200, output_tokens=75,
                                          cache_read_tokens=1800)
    assert usage.cost_usd == pytest.approx(expected, abs=1e-6)
    saved = load_result(tmp_path / spec.episode_id)
    assert saved == result and saved.agent_options["model"] == "gpt-4o-mini"
    last = server.requests[2].body["messages"]
    assert "Validation score: 4.5" in last[-1]["content"]
