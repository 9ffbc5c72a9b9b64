"""What the built-in agents report to the episode's recorder (`TaskInfo.record`), their seed,
and the observation facts they read: the real `anthropic` SDK and httpx over HTTP against
fake model APIs on loopback, and real subprocesses for the command protocol."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fake_servers import (
    FakeServer,
    Reply,
    anthropic_error,
    anthropic_message,
    chat_completion,
    function_call,
    text,
    thinking_reply,
    tool_use,
)
from helpers import TOY_TASK

from rdbench.agents import AgentError, TaskInfo, make_agent
from rdbench.agents.claude import ClaudeAgent
from rdbench.agents.openai_compat import OpenAICompatAgent
from rdbench.observation import Observation
from rdbench.records import (
    Event,
    ModelReplyEvent,
    ModelRequestEvent,
    RetryEvent,
    parse_event,
)
from rdbench.task import load_task
from rdbench.tools import tool_definitions


class Recorder:
    """A TaskInfo.record that keeps each event as the transcript would: parsed and typed."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event_type: str, fields: dict[str, Any]) -> None:
        line = json.loads(json.dumps(fields))  # what a JSON-lines transcript would hold
        self.events.append(parse_event({**line, "type": event_type, "step": len(self.events),
                                        "t": "2026-01-01T00:00:00Z"}))

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]


def task_info(record: Recorder, *, seed: int = 0, tools: list[str] | None = None) -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(tools), {"steps": 20}, seed=seed,
                    record=record)


def make_claude(server: FakeServer, **options: Any) -> ClaudeAgent:
    options = {"base_url": server.url, "retry_base_delay": 0.05, **options}
    return make_agent("claude", **options)  # type: ignore[return-value]


def make_openai(server: FakeServer, **options: Any) -> OpenAICompatAgent:
    options = {"base_url": f"{server.url}/v1", "model": "local-model",
               "retry_base_delay": 0.05, **options}
    return make_agent("openai", **options)  # type: ignore[return-value]


def slowly(seconds: float, reply: Any) -> Any:
    """A scripted reply the server sends only after `seconds`."""

    def answer(request: dict[str, Any]) -> Reply:
        time.sleep(seconds)
        return reply(request) if callable(reply) else reply

    return answer


# --- claude ---------------------------------------------------------------------------------


def test_claude_episode_records_each_request_and_full_reply(server: FakeServer) -> None:
    server.add(
        slowly(0.2, thinking_reply("The task wants a bigger number; look first.",
                                   text("Looking around."), tool_use("bash", {"command": "ls"}),
                                   input_tokens=900, output_tokens=60, cache_write=300)),
        thinking_reply("answer.py is there; done.", tool_use("submit"), input_tokens=50,
                       output_tokens=10, cache_read=1200),
    )
    record = Recorder()
    agent = make_claude(server, thinking=2048, max_tokens=4096)
    agent.reset(task_info(record), "the briefing")
    assert agent.act("the briefing") == {"tool": "bash", "input": {"command": "ls"}}
    assert record.types == ["model_request", "model_reply"]
    assert agent.act(Observation("exit code: 0\nstdout:\nanswer.py\n", tool="bash",
                                 exit_code=0))["tool"] == "submit"
    assert record.types == ["model_request", "model_reply"] * 2

    first, second = record.of(ModelRequestEvent)
    assert first.system == agent.system_prompt and first.model == agent.model
    assert first.messages == [{"role": "user",
                               "content": [{"type": "text", "text": "the briefing"}]}]
    assert second.system is None  # the system prompt is recorded once
    assert [m["role"] for m in second.messages] == ["assistant", "user"]  # only the new ones
    (result,) = second.messages[1]["content"]
    assert result["type"] == "tool_result"
    assert result["content"] == "exit code: 0\nstdout:\nanswer.py\n"

    looked, done = record.of(ModelReplyEvent)
    assert looked.text == "Looking around."
    assert looked.thinking == "The task wants a bigger number; look first."
    assert [(c["tool"], c["input"]) for c in looked.tool_calls] == [("bash", {"command": "ls"})]
    assert looked.tool_calls[0]["id"] == second.messages[1]["content"][0]["tool_use_id"]
    assert looked.stop_reason == "tool_use"
    assert looked.usage["input_tokens"] == 900 and looked.usage["output_tokens"] == 60
    assert looked.usage["cache_write_tokens"] == 300 and looked.usage["cost_usd"] > 0
    assert 0.2 <= looked.latency_s < 5  # the server took 0.2 s to answer
    assert done.usage["cache_read_tokens"] == 1200 and done.latency_s < looked.latency_s
    assert done.thinking == "answer.py is there; done." and done.text == ""


def test_without_thinking_the_reply_records_none(server: FakeServer) -> None:
    server.add(thinking_reply("never sent", text("Just submitting."), tool_use("submit")))
    record = Recorder()
    agent = make_claude(server)
    agent.reset(task_info(record), "brief")
    agent.act("brief")
    (reply,) = record.of(ModelReplyEvent)
    assert reply.thinking is None and reply.text == "Just submitting."
    assert "thinking" not in server.requests[0].body


def test_overloaded_call_records_a_retry_with_its_wait(server: FakeServer) -> None:
    server.add(anthropic_error(529, "overloaded_error", "Overloaded"),
               anthropic_message(tool_use("submit")))
    record = Recorder()
    agent = make_claude(server)
    agent.reset(task_info(record), "brief")
    assert agent.act("brief")["tool"] == "submit"
    assert record.types == ["model_request", "retry", "model_reply"]  # one request, resent
    (retry,) = record.of(RetryEvent)
    assert retry.attempt == 1
    assert "529" in retry.error and "Overloaded" in retry.error
    assert 0.025 <= retry.wait_s <= 0.05  # half to all of the base delay
    assert retry.wait_s == pytest.approx(agent.usage().retry_wait_s, abs=1e-3)


@pytest.mark.parametrize("seed", [3, 11])
def test_retry_jitter_comes_from_the_episode_seed(server: FakeServer, seed: int) -> None:
    server.add(anthropic_error(529, "overloaded_error", "Overloaded"),
               anthropic_message(tool_use("submit")))
    record = Recorder()
    agent = make_claude(server)
    agent.reset(task_info(record, seed=seed), "brief")
    agent.act("brief")
    (retry,) = record.of(RetryEvent)
    assert retry.wait_s == round(0.05 * random.Random(seed).uniform(0.5, 1.0), 3)


def test_after_a_trim_the_request_records_the_rebuilt_first_message_only(
    server: FakeServer,
) -> None:
    server.add(
        anthropic_message(tool_use("bash", {"command": "a"})),
        anthropic_message(tool_use("bash", {"command": "b"})),
        anthropic_error(400, "invalid_request_error", "prompt is too long: 250000 tokens"),
        anthropic_message(tool_use("submit")),
    )
    record = Recorder()
    agent = make_claude(server, context_limit=1000)
    agent.reset(task_info(record), "brief")
    agent.act("brief")
    agent.act("y" * 3000)
    agent.act("z" * 3000)
    requests = record.of(ModelRequestEvent)
    assert len(requests) == 4  # the overflowed one, then the trimmed one
    overflowed, trimmed = requests[2], requests[3]
    assert [m["role"] for m in overflowed.messages] == ["assistant", "user"]
    (rebuilt,) = trimmed.messages  # the kept turns were recorded before
    (block,) = rebuilt["content"]  # the briefing, and a note of what went
    assert rebuilt["role"] == "user" and block["text"].startswith("brief\n\n")
    assert "earlier messages were removed" in block["text"]


def test_claude_marks_errors_from_the_observation_facts(server: FakeServer) -> None:
    calls = [tool_use("read_file", {"path": "a"}), tool_use("read_file", {"path": "b"}),
             tool_use("read_file", {"path": "c"})]
    server.add(anthropic_message(*calls), anthropic_message(tool_use("submit")))
    agent = make_claude(server)
    agent.reset(task_info(Recorder()), "brief")
    agent.act("brief")
    agent.act(Observation("Cannot read a: no such file", tool="read_file", is_error=True))
    agent.act(Observation("Error: this file's text starts so", tool="read_file"))
    agent.act("Error: plain text from a caller without facts")
    results = server.requests[1].body["messages"][-1]["content"]
    assert [r.get("is_error", False) for r in results] == [True, False, True]


# --- openai-compatible ----------------------------------------------------------------------


def test_openai_agent_sends_the_episode_seed(server: FakeServer) -> None:
    server.add(chat_completion(function_call("submit")), chat_completion(function_call("submit")))
    agent = make_openai(server)
    agent.reset(task_info(Recorder(), seed=42), "brief")
    agent.act("brief")
    assert server.requests[0].body["seed"] == 42
    quiet = make_openai(server, send_seed=False)
    quiet.reset(task_info(Recorder(), seed=42), "brief")
    quiet.act("brief")
    assert "seed" not in server.requests[1].body


def test_openai_agent_records_requests_and_replies(server: FakeServer) -> None:
    first = chat_completion(function_call("bash", {"command": "ls"}), content="Looking.",
                            prompt_tokens=1000, completion_tokens=50, cached_tokens=600)
    first.body["choices"][0]["message"]["reasoning_content"] = "List the files first."
    server.add(first, chat_completion(function_call("submit")))
    record = Recorder()
    agent = make_openai(server)
    agent.reset(task_info(record), "brief")
    agent.act("brief")
    agent.act(Observation("exit code: 0\nstdout:\nanswer.py\n", tool="bash", exit_code=0))
    assert record.types == ["model_request", "model_reply"] * 2
    opening, follow_up = record.of(ModelRequestEvent)
    assert opening.system == agent.system_prompt
    assert opening.messages == [{"role": "user", "content": "brief"}]  # no system message
    assert follow_up.system is None
    assert [m["role"] for m in follow_up.messages] == ["assistant", "tool"]
    reply = record.of(ModelReplyEvent)[0]
    assert reply.text == "Looking." and reply.thinking == "List the files first."
    assert reply.stop_reason == "tool_calls"
    assert [(c["tool"], c["input"]) for c in reply.tool_calls] == [("bash", {"command": "ls"})]
    assert (reply.usage["input_tokens"], reply.usage["cache_read_tokens"]) == (400, 600)
    assert reply.latency_s >= 0


# --- command protocol -----------------------------------------------------------------------


def program(tmp_path: Path, source: str) -> str:
    path = tmp_path / "agent_program.py"
    path.write_text(source)
    return f"{sys.executable} {path}"


REQUEST = {"type": "model_request", "model": "my-model", "system": "be brief",
           "messages": [{"role": "user", "content": "the briefing"}]}
REPLY = {"type": "model_reply", "model": "my-model", "text": "I will submit.",
         "thinking": "nothing to do", "tool_calls": [{"id": "c1", "tool": "submit",
                                                      "input": {}}],
         "stop_reason": "tool_use", "usage": {"input_tokens": 10}, "latency_s": 0.5}


def sends_then_acts(tmp_path: Path, *messages: dict[str, Any]) -> str:
    lines = "\n".join(f"print(json.dumps({m!r}), flush=True)" for m in messages)
    return program(tmp_path, f"""
import json, sys
first = json.loads(sys.stdin.readline())
{lines}
print(json.dumps({{"type": "action", "tool": "bash",
                   "input": {{"command": "echo " + str(first["seed"])}}}}), flush=True)
sys.stdin.readline()
""")


def test_command_agent_forwards_model_events_and_gets_the_seed(tmp_path: Path) -> None:
    retry = {"type": "retry", "attempt": 1, "wait_s": 2.0, "error": "HTTP 529"}
    agent = make_agent("command", command=sends_then_acts(tmp_path, REQUEST, retry, REPLY),
                       reply_timeout=20)
    record = Recorder()
    try:
        agent.reset(task_info(record, seed=7), "brief")
        assert agent.act("brief") == {"tool": "bash", "input": {"command": "echo 7"}}
    finally:
        agent.close()
    assert record.types == ["model_request", "retry", "model_reply"]
    request, retried, reply = record.events
    assert request.model_dump(exclude={"t", "step", "v"}) == REQUEST
    assert isinstance(retried, RetryEvent) and retried.wait_s == 2.0
    assert reply.model_dump(exclude={"t", "step", "v"}) == REPLY


@pytest.mark.parametrize(("event", "says"), [
    ({k: v for k, v in REPLY.items() if k != "latency_s"}, r"latency_s: Field required"),
    ({**REQUEST, "messages": "the briefing"}, r"messages: Input should be a valid list"),
    ({**REPLY, "mood": "happy"}, r"mood: Extra inputs are not permitted"),
    ({**REQUEST, "step": 3}, r"sets \['step'\], which rdbench adds itself"),
])
def test_command_agent_rejects_a_malformed_model_event(
    tmp_path: Path, event: dict[str, Any], says: str
) -> None:
    agent = make_agent("command", command=sends_then_acts(tmp_path, event), reply_timeout=20)
    record = Recorder()
    try:
        agent.reset(task_info(record), "brief")
        with pytest.raises(AgentError, match=rf"malformed model event: .*{says}"):
            agent.act("brief")
    finally:
        agent.close()
    assert record.events == []

