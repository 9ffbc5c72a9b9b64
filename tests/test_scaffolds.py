"""Scaffolds (agents/*.py) with both providers: the real `anthropic` SDK and httpx against
fake model APIs on loopback, scripted; end to end on a shipped task in a bwrap sandbox.

plain trims the oldest turns near the limit; notepad's content is shown in every request and
survives trimming; summary asks the model for a summary near the limit, which replaces the
old turns; a scaffold's own tools are answered without an env step; `end` lets a scaffold
ask the model once more (a successor's notes); bad specs name what is valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_servers import (
    FakeServer,
    Reply,
    anthropic_message,
    chat_completion,
    function_call,
    text,
    tool_use,
)
from helpers import TOY_TASK

from rdbench.agents import AgentConfigError, AgentError, TaskInfo, make_agent
from rdbench.agents.base import TeamSeat
from rdbench.agents.chat import ChatAgent
from rdbench.agents.scaffold import load_scaffold
from rdbench.records import ActionEvent, ModelRequestEvent, ScaffoldEvent, parse_event
from rdbench.resources import environments_dir
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.tools import tool_definitions
from rdbench.transcript import read_events

PROVIDERS = ["claude", "openai"]
TASK = environments_dir() / "scaling-law"  # grading reads answer.json only: fast
SUMMARY = "SUMMARY: answer.json holds width 256; echo first and second ran fine."


def options(provider: str, server: FakeServer, **more: Any) -> dict[str, Any]:
    """The agent options that point `provider` at the fake server."""
    if provider == "claude":
        return {"base_url": server.url, "retry_base_delay": 0.01, **more}
    return {"base_url": f"{server.url}/v1", "model": "local-model", "retry_base_delay": 0.01,
            **more}


def chat_agent(provider: str, server: FakeServer, **more: Any) -> ChatAgent:
    """The `provider` agent pointed at the fake server."""
    return make_agent(provider, **options(provider, server, **more))  # type: ignore[return-value]


def reply(provider: str, *calls: tuple[str, dict[str, Any]], said: str = "",
          prompt: int = 100) -> Reply:
    """A scripted reply of `provider` with these tool calls, text and prompt tokens."""
    if provider == "claude":
        blocks = [text(said)] if said else []
        return anthropic_message(*blocks, *(tool_use(name, args) for name, args in calls),
                                 input_tokens=prompt)
    return chat_completion(*(function_call(name, args) for name, args in calls),
                           content=said or None, prompt_tokens=prompt)


def sent(server: FakeServer, index: int) -> str:
    """The messages of request `index` as JSON text (system prompt and tools left out)."""
    return json.dumps(server.requests[index].body["messages"])


def last_message_text(provider: str, server: FakeServer, index: int) -> str:
    """The text the last message of request `index` ends with."""
    last = server.requests[index].body["messages"][-1]
    return str(last["content"][-1]["text"] if provider == "claude" else last["content"])


def first_user_text(provider: str, server: FakeServer, index: int) -> str:
    """The text of the first user message of request `index`."""
    messages = [m for m in server.requests[index].body["messages"] if m["role"] == "user"]
    content = messages[0]["content"]
    return str(content[0]["text"] if provider == "claude" else content)


class Recorder:
    """A TaskInfo.record keeping events as the transcript would parse them."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event_type: str, fields: dict[str, Any]) -> None:
        line = json.loads(json.dumps(fields))
        self.events.append(parse_event({**line, "type": event_type, "step": 0,
                                        "t": "2026-01-01T00:00:00Z"}))

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def task_info(record: Recorder, seat: TeamSeat | None = None) -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(["bash", "submit"]),
                    {"steps": 20}, record=record, seat=seat)


def episode(provider: str, server: FakeServer, folder: Path, scaffold: str,
            **agent_options: Any) -> tuple[Any, list[Any]]:
    """One episode of TASK in bwrap with the scripted server: its result and events."""
    spec = EpisodeSpec(task=load_task(TASK), agent=provider, sandbox="bwrap",
                       scaffold=scaffold, tools=["bash", "read_file", "submit"],
                       agent_options=options(provider, server, **agent_options))
    result = run_episode(spec, folder)
    assert result.outcome == "submitted" and result.agent_error is None, result.agent_error
    return result, read_events(folder / spec.episode_id)


# --- end to end on a shipped task --------------------------------------------------------


@pytest.mark.bwrap
@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_trims_the_oldest_turns_near_the_limit(
    provider: str, server: FakeServer, tmp_path: Path, bwrap_rootfs: str
) -> None:
    server.add(
        reply(provider, ("bash", {"command": "echo first-call"}), prompt=500),
        reply(provider, ("bash", {"command": "echo second-call"}), prompt=1000),
        reply(provider, ("bash", {"command": "head -c 1500 train.py"}), prompt=1700),
        reply(provider, ("submit", {}), prompt=700),
    )
    result, events = episode(provider, server, tmp_path, "plain", context_limit=2000)
    assert "first-call" in sent(server, 2)
    assert "first-call" not in sent(server, 3)  # 1700 >= 0.8 x 2000: the oldest went
    assert "earlier messages were removed" in first_user_text(provider, server, 3)
    assert "head -c 1500" in sent(server, 3)  # the newest exchange stays, answered
    (trim,) = [e for e in events if isinstance(e, ScaffoldEvent)]
    assert trim.action == "trim" and trim.details["turns_dropped"] >= 2
    assert (result.scaffold, result.scaffold_settings) == ("plain", {})


@pytest.mark.bwrap
@pytest.mark.parametrize("provider", PROVIDERS)
def test_notepad_is_in_every_request_and_survives_trimming(
    provider: str, server: FakeServer, tmp_path: Path, bwrap_rootfs: str
) -> None:
    note = "NOTE: width 64 looked best; predict 0.02"
    server.add(
        reply(provider, ("notepad", {"content": note}), ("bash", {"command": "echo first-call"}),
              prompt=500),
        reply(provider, ("bash", {"command": "echo second-call"}), prompt=900),
        reply(provider, ("bash", {"command": "head -c 1500 train.py"}), prompt=1700),
        reply(provider, ("submit", {}), prompt=700),
    )
    result, events = episode(provider, server, tmp_path, "notepad", context_limit=2000)
    assert len(server.requests) == 4
    for index in (1, 2, 3):  # every request after the write ends with the notepad
        assert last_message_text(provider, server, index) == f"Your notepad:\n{note}"
    assert "first-call" not in sent(server, 3)  # trimmed, and the notepad is still there
    assert "earlier messages were removed" in first_user_text(provider, server, 3)
    scaffold_events = [e for e in events if isinstance(e, ScaffoldEvent)]
    assert [e.action for e in scaffold_events] == ["notepad", "trim"]
    assert scaffold_events[0].details["input"] == {"content": note}
    assert scaffold_events[0].text.startswith("Notepad saved")
    actions = [e.tool for e in events if isinstance(e, ActionEvent)]
    assert actions == ["bash", "bash", "bash", "submit"]  # the notepad took no env step
    assert result.steps == 4
    assert result.scaffold == "notepad(max_chars=20000)"
    assert result.scaffold_settings == {"max_chars": 20000}


@pytest.mark.bwrap
@pytest.mark.parametrize("provider", PROVIDERS)
def test_summary_near_the_limit_replaces_the_old_turns(
    provider: str, server: FakeServer, tmp_path: Path, bwrap_rootfs: str
) -> None:
    server.add(
        reply(provider, ("bash", {"command": "echo first-call"}), prompt=400),
        reply(provider, ("bash", {"command": "echo second-call"}), prompt=1200),
        reply(provider, said=SUMMARY, prompt=1300),  # the summary request's reply
        reply(provider, ("submit", {}), prompt=500),
    )
    result, events = episode(provider, server, tmp_path, "summary(at=0.5)",
                             context_limit=2000)
    assert len(server.requests) == 4
    asked = last_message_text(provider, server, 2)
    assert "summary" in asked and "Do not call a tool" in asked
    assert "first-call" in sent(server, 2)  # the summary request sees everything
    first = first_user_text(provider, server, 3)
    assert SUMMARY in first and first.startswith(load_task(TASK).instructions[:40])
    assert "first-call" not in sent(server, 3)  # replaced by the summary
    assert "second-call" in sent(server, 3)  # the newest exchange stays, answered
    assert "Do not call a tool" not in sent(server, 3)
    (summary,) = [e for e in events if isinstance(e, ScaffoldEvent)]
    assert summary.action == "summary" and summary.text == SUMMARY
    assert summary.details["turns_replaced"] == 2  # the first call and its answer
    assert result.usage.requests == 4  # the summary was charged like any request
    requests = [e for e in events if isinstance(e, ModelRequestEvent)]
    assert len(requests) == 4
    assert result.scaffold == "summary(at=0.5,keep=1)"
    assert result.scaffold_settings == {"at": 0.5, "keep": 1}


# --- the loop's handling of scaffolds (no sandbox) -----------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_scaffold_tools_are_answered_at_once_without_an_env_step(
    provider: str, server: FakeServer
) -> None:
    server.add(
        reply(provider, ("notepad", {"content": "plan A"})),  # only the scaffold's tool
        reply(provider, ("notepad", {"content": "plan B"}), ("bash", {"command": "ls"})),
        reply(provider, ("submit", {})),
    )
    record = Recorder()
    agent = chat_agent(provider, server, scaffold="notepad")
    agent.reset(task_info(record), "brief")
    tools = [t["name"] for t in agent.tools]
    assert tools.count("notepad") == 1 and tools[-1] == "notepad"
    assert agent.act("brief") == {"tool": "bash", "input": {"command": "ls"}}
    assert len(server.requests) == 2  # the first reply was answered without acting
    assert agent.act("exit code: 0")["tool"] == "submit"
    notes = record.of(ScaffoldEvent)
    assert [(e.action, e.details["input"]["content"]) for e in notes] == [
        ("notepad", "plan A"), ("notepad", "plan B")]
    assert all(e.worker is None for e in notes)
    body = sent(server, 2)
    assert "Notepad saved (6 characters)." in body and "exit code: 0" in body
    assert last_message_text(provider, server, 2) == "Your notepad:\nplan B"


def test_a_scaffold_tool_with_bad_input_is_answered_with_an_error(server: FakeServer) -> None:
    server.add(chat_completion(function_call("notepad", "{not json")),
               chat_completion(function_call("submit")))
    record = Recorder()
    agent = chat_agent("openai", server, scaffold="notepad")
    agent.reset(task_info(record), "brief")
    assert agent.act("brief")["tool"] == "submit"
    (answer,) = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert answer["content"].startswith("Error: the input of notepad must be a JSON object")
    assert record.of(ScaffoldEvent) == []


def test_a_model_that_only_calls_scaffold_tools_is_stopped(server: FakeServer) -> None:
    server.add(*[chat_completion(function_call("notepad", {"content": "again"}))] * 30)
    agent = chat_agent("openai", server, scaffold="notepad")
    agent.reset(task_info(Recorder()), "brief")
    with pytest.raises(AgentError, match="25 requests in a row without calling an env tool"):
        agent.act("brief")
    assert len(server.requests) == 25


END_SCAFFOLD = '''
from rdbench.agents.scaffold import Scaffold


class Relay(Scaffold):
    name = "relay-test"

    def start(self, context):
        context.note("hello", "from the start", seat_given=context.info.seat is not None)

    def end(self, context, reason):
        return context.ask(f"Write notes for your successor (the episode ended: {reason}).")
'''


def test_end_asks_the_scaffold_with_every_open_call_answered(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "relay.py").write_text(END_SCAFFOLD)
    monkeypatch.chdir(tmp_path)  # a scaffold by path (calls.py names start with a letter)
    server.add(
        anthropic_message(tool_use("bash", {"command": "ls"}),
                          tool_use("bash", {"command": "pwd"})),
        anthropic_message(text("Notes: look at answer.py first.")),
    )
    record = Recorder()
    agent = chat_agent("claude", server, scaffold="relay.py")
    agent.reset(task_info(record, TeamSeat(1, 3, board=None)), "brief")
    assert agent.act("brief")["input"] == {"command": "ls"}
    assert agent.end("limit") == "Notes: look at answer.py first."
    messages = server.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    results = [b for b in messages[2]["content"] if b["type"] == "tool_result"]
    assert [r["content"] for r in results] == [
        "(the episode ended, limit, before this result was read)",
        "(not run: the episode ended, limit)"]
    assert "notes for your successor" in messages[2]["content"][-1]["text"]
    (hello,) = record.of(ScaffoldEvent)
    assert (hello.action, hello.worker, hello.details) == ("hello", 1, {"seat_given": True})
    assert agent.usage().requests == 2  # the notes were charged


@pytest.mark.parametrize(("spec", "says"), [
    ("summary(bogus=1)", r"no setting bogus; its settings: at, keep"),
    ("summary(at=high)", r"at must be float"),
    ("summary(at=2.0)", r"at must be between 0.1 and 1"),
    ("nonesuch", r"Unknown scaffold 'nonesuch'; shipped: .*notepad, plain, successor, summary"),
    ("summary(at=0.7", r"not closed"),
    ("notepad(max_chars=10", r"not closed"),
])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_scaffold_spec_names_what_is_valid(
    provider: str, server: FakeServer, spec: str, says: str
) -> None:
    with pytest.raises(AgentConfigError, match=says):
        make_agent(provider, **options(provider, server, scaffold=spec))


def test_shipped_scaffolds_load_by_name_with_their_settings() -> None:
    assert load_scaffold(None).spec == "plain"
    assert load_scaffold("summary").settings == {"at": 0.7, "keep": 1}
    assert load_scaffold("summary(keep=2, at=0.6)").spec == "summary(at=0.6,keep=2)"
    assert [t["name"] for t in load_scaffold("notepad").tools()] == ["notepad"]


def test_the_scaffold_written_in_the_docs_runs_from_its_file(
    server: FakeServer, tmp_path: Path
) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "experiments.md").read_text()
    code = docs.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "scratch.py").write_text(code)
    server.add(*(reply("claude", ("bash", {"command": f"echo {i}"})) for i in range(3)))
    agent = chat_agent("claude", server, scaffold=f"{tmp_path}/mine/scratch.py(every=2)")
    assert agent.scaffold.spec == "scratch(every=2)"
    agent.reset(task_info(Recorder()), "brief")
    for output in ("brief", "0", "1"):
        assert agent.act(output)["tool"] == "bash"
    reminders = ["Reminder: check your validation score." in sent(server, i) for i in range(3)]
    assert reminders == [False, True, False]
