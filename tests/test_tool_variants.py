"""Tool variants: each degraded tool behaves as declared and is told in its description (an
env on the bwrap backend); an episode through the runner, with the real `anthropic` SDK and
with the openai agent against fake model servers, sends the degraded descriptions and the cut
output and records the variants; a malformed or unknown variant is an error naming the valid
ones (the parser, the env and `rdbench run --tools`)."""

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
    tool_use,
)
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.env import RDEnv
from rdbench.identity import resolved_tools
from rdbench.records import ObservationEvent, ResetEvent, load_result
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.sandbox.base import ExecResult
from rdbench.task import get_task, load_task
from rdbench.tool_variants import (
    FEEDBACK_OFF_REPLY,
    ToolVariantError,
    parse_tool,
    parse_tool_set,
)
from rdbench.tools import TOOL_SPECS, format_exec
from rdbench.transcript import Transcript, read_events

KNOWN = [*TOOL_SPECS, "lab"]
LONG = "python3 -c \"print('x' * 2000)\""  # prints 2000 characters (and a newline)
CUT_NOTE = "[output cut at 500 characters: 1501 more were not shown]"


# --- the syntax and its validation -----------------------------------------------------------

@pytest.mark.parametrize(("entry", "canonical", "settings"), [
    ("bash", "bash", {}),
    ("bash( stderr=off , max_output = 500 )", "bash(max_output=500,stderr=off)",
     {"max_output": 500, "stderr": "off"}),
    ("bash(stderr=on)", "bash", {}),  # the default: the same tool, the same identity
    ("score(off)", "score(off)", {"off": True}),
    ("score(every=10)", "score(every=10)", {"every": 10}),
    ("edit_file(feedback=off)", "edit_file(feedback=off)", {"feedback": "off"}),
    ("read_file(max_lines=50)", "read_file(max_lines=50)", {"max_lines": 50}),
    ("notepad(off)", "notepad(off)", {"off": True}),
])
def test_an_entry_reads_to_its_canonical_text(
    entry: str, canonical: str, settings: dict[str, Any]
) -> None:
    choice = parse_tool(entry, KNOWN)
    assert choice.canonical == canonical and choice.settings == settings


@pytest.mark.parametrize(("entry", "said"), [
    ("teleport(off)", "Unknown tool 'teleport'"),
    ("bash(max_lines=5)", "bash has no option 'max_lines'"),
    ("bash(max_lines=5)", "it takes max_output, stderr, off"),
    ("read_file(feedback=off)", "it takes max_lines, off"),
    ("write_file(max_output=5)", "it takes off"),
    ("submit(off)", "it takes no variant"),
    ("lab(off)", "it takes no variant"),
    ("bash(max_output=0)", "max_output must be a whole number >= 1, got 0"),
    ("bash(max_output=many)", "max_output must be a whole number >= 1, got 'many'"),
    ("bash(max_output=2.5)", "got 2.5"),
    ("bash(max_output)", "got True"),
    ("bash(stderr=maybe)", "stderr must be on or off, got 'maybe'"),
    ("score(every=-1)", "every must be a whole number >= 1"),
    ("score(off=1)", "write score(off) to take the tool away"),
    ("score(off,every=3)", "takes no other option"),
    ("bash(max_output=5", "is not closed"),
])
def test_a_bad_entry_is_an_error_naming_what_is_valid(entry: str, said: str) -> None:
    with pytest.raises(ToolVariantError) as caught:
        parse_tool(entry, KNOWN)
    assert said in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_an_unknown_option_names_every_variant() -> None:
    with pytest.raises(ToolVariantError) as caught:
        parse_tool("bash(colour=off)", KNOWN)
    for variant in ("bash(max_output=N)", "bash(stderr=off)", "read_file(max_lines=N)",
                    "edit_file(feedback=off)", "score(every=N)", "NAME(off)"):
        assert variant in str(caught.value)


def test_a_tool_set_names_every_unknown_tool_and_refuses_a_tool_twice() -> None:
    with pytest.raises(ToolVariantError, match=r"Unknown tools \['tp', 'fly'\] in --tools"):
        parse_tool_set(["tp(off)", "bash", "fly"], KNOWN, " in --tools")
    with pytest.raises(ToolVariantError, match=r"Tools \['bash'\] are given more than once"):
        parse_tool_set(["bash(stderr=off)", "bash(max_output=9)"], KNOWN)


def test_the_env_offers_the_tools_keeps_the_canonical_set_and_tells_the_variants() -> None:
    task = load_task(TOY_TASK)
    env = RDEnv(task, tools=["bash(stderr=off, max_output=500)", "score(off)", "read_file"])
    assert env.tools == ["bash", "read_file", "submit"]  # score is not offered
    assert env.tool_set == ["bash(max_output=500,stderr=off)", "score(off)", "read_file",
                            "submit"]
    assert env.tool_variants == {"bash": {"max_output": 500, "stderr": "off"},
                                 "score": {"off": True}}
    assert resolved_tools(task, ["bash(stderr=on)", "read_file"]) == ["bash", "read_file",
                                                                      "submit"]
    with pytest.raises(ValueError, match="Unknown tools \\['lookup'\\] for task toy-task"):
        RDEnv(task, tools=["lookup(off)"])
    with pytest.raises(ValueError, match="edit_file has no option 'every'"):
        RDEnv(task, tools=["edit_file(every=3)"])


def test_a_variant_changes_the_episode_identity() -> None:
    task = load_task(TOY_TASK)
    plain = EpisodeSpec(task=task, agent="claude", sandbox="bwrap", tools=["bash", "score"])
    cut = EpisodeSpec(task=task, agent="claude", sandbox="bwrap",
                      tools=["bash(max_output=500)", "score"])
    same = EpisodeSpec(task=task, agent="claude", sandbox="bwrap",
                       tools=["bash(max_output = 500)", "score"])
    assert cut.configuration["tools"] == ["bash(max_output=500)", "score", "submit"]
    assert plain.identity != cut.identity == same.identity


def test_format_exec_cuts_stdout_then_stderr_and_drops_stderr() -> None:
    result = ExecResult(returncode=3, stdout="o" * 8, stderr="e" * 8)
    assert format_exec(result, {"max_output": 10}) == (
        "exit code: 3\nstdout:\noooooooo\nstderr:\nee\n"
        "[output cut at 10 characters: 6 more were not shown]")
    assert format_exec(result, {"max_output": 4}) == (
        "exit code: 3\nstdout:\noooo\n[output cut at 4 characters: 12 more were not shown]")
    assert format_exec(result, {"stderr": "off"}) == "exit code: 3\nstdout:\noooooooo"
    assert format_exec(result, {"max_output": 16}) == format_exec(result)


@pytest.mark.parametrize(("given", "said"), [
    ("bash(max_output=0)", "max_output must be a whole number >= 1, got 0"),
    ("bash,score(when=3)", "score has no option 'when'"),
    ("bash,teleport", "Unknown tools ['teleport'] in --tools"),
    ("bash(max_output=5", "is not closed"),
])
def test_run_refuses_a_bad_tools_entry_in_one_line(given: str, said: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shown = CliRunner().invoke(app, ["run", "--task", str(TOY_TASK), "--out", str(out),
                                     "--tools", given])
    assert shown.exit_code == 1
    lines = [line for line in shown.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], shown.stderr
    assert not out.exists()


# --- what the agent sees, in a real sandbox --------------------------------------------------

def act(env: RDEnv, tool: str, **tool_input: Any) -> tuple[str, dict[str, Any]]:
    observation, _, _, _, info = env.step({"tool": tool, "input": tool_input})
    return observation, info


@pytest.mark.bwrap
def test_each_variant_degrades_what_the_agent_sees(tmp_path: Path) -> None:
    tools = ["bash(max_output=500)", "python(stderr=off)", "read_file(max_lines=50)",
             "write_file", "edit_file(feedback=off)", "score(every=3)", "notepad(off)"]
    transcript = Transcript(tmp_path)
    env = RDEnv(load_task(TOY_TASK), sandbox="bwrap", tools=tools, transcript=transcript)
    try:
        _, info = env.reset(seed=0)
        described = {tool["name"]: tool["description"] for tool in info["tools"]}
        assert set(described) == {"bash", "python", "read_file", "write_file", "edit_file",
                                  "score", "submit"}  # notepad(off) is not offered
        assert "cut after 500 characters" in described["bash"]
        assert "stderr is not shown" in described["python"]
        assert "Only the first 50 lines" in described["read_file"]
        assert "does not say whether the edit applied" in described["edit_file"]
        assert "at most once every 3 steps" in described["score"]
        assert described["write_file"] == TOOL_SPECS["write_file"]["description"]
        assert info["tool_variants"]["notepad"] == {"off": True}

        seen, _ = act(env, "bash", command=LONG)  # step 1
        assert "x" * 500 in seen and "x" * 501 not in seen and seen.endswith(CUT_NOTE)
        seen, _ = act(env, "python",
                      code="import sys; print('to stdout'); sys.exit('to stderr')")  # 2
        assert "to stdout" in seen and "to stderr" not in seen and "exit code: 1" in seen
        lines = "".join(f"line {n}\n" for n in range(1, 121))
        act(env, "write_file", path="long.txt", content=lines)  # 3
        seen, facts = act(env, "read_file", path="long.txt")  # 4
        assert seen.splitlines()[:50] == [f"line {n}" for n in range(1, 51)]
        assert "line 51" not in seen
        assert seen.endswith("[only the first 50 lines are shown: 70 more were left out]")
        assert facts["observation"]["truncated"]

        seen, facts = act(env, "edit_file", path="answer.py", old_string="print(1)",
                          new_string="print(4)")  # 5: applies
        assert seen == FEEDBACK_OFF_REPLY and not facts["observation"]["is_error"]
        missing, facts = act(env, "edit_file", path="answer.py", old_string="print(9)",
                             new_string="print(7)")  # 6: does not apply, says the same
        assert missing == FEEDBACK_OFF_REPLY and not facts["observation"]["is_error"]
        assert "print(4)" in act(env, "bash", command="cat answer.py")[0]  # 7

        seen, facts = act(env, "score")  # 8: grades
        assert seen.startswith("Validation score: 4") and "validation" in facts
        seen, facts = act(env, "score")  # 9: too soon
        assert seen == ("Error: score can be used once every 3 steps; it was last used at "
                        "step 8, so it can be used again at step 11 (this is step 9).")
        assert "validation" not in facts and facts["observation"]["is_error"]
        act(env, "bash", command="true")  # 10
        seen, facts = act(env, "score")  # 11: allowed again
        assert seen.startswith("Validation score: 4") and "validation" in facts
        seen, _ = act(env, "notepad", content="plan")  # 12: taken away
        assert "Unknown tool 'notepad'" in seen
        _, reward, terminated, _, _ = env.step({"tool": "submit", "input": {}})
        assert terminated and float(reward) > 0
    finally:
        env.close()
        transcript.close()
    events = read_events(tmp_path)
    (reset,) = [event for event in events if isinstance(event, ResetEvent)]
    assert reset.tools == [*env.tool_set] and "bash(max_output=500)" in reset.tools
    edits = [event for event in events
             if isinstance(event, ObservationEvent) and event.tool == "edit_file"]
    assert [edit.shown for edit in edits] == [FEEDBACK_OFF_REPLY] * 2
    assert edits[0].text == "Edited answer.py: replaced 1 occurrence"  # the real outcome
    assert edits[1].text.startswith("Error: old_string was not found in answer.py")


# --- whole episodes through the runner, against fake model servers --------------------------

SHIPPED = "scaling-law"  # its grader only reads answer.json: seconds
RUN_TOOLS = ["bash(max_output=500)", "read_file(max_lines=50)", "score(every=10)", "submit"]
RECORDED = {"bash": {"max_output": 500}, "read_file": {"max_lines": 50},
            "score": {"every": 10}}


def run_with_variants(agent: str, options: dict[str, Any], replies: list[Reply],
                      server: FakeServer, out: Path) -> tuple[Any, list[str]]:
    """Run one episode of the shipped task with RUN_TOOLS; the result and every request
    body the fake server got, as JSON text."""
    server.add(*replies)
    spec = EpisodeSpec(task=get_task(SHIPPED), agent=agent, sandbox="bwrap", seed=1,
                       agent_options=options, tools=RUN_TOOLS)
    result = run_episode(spec, out)
    assert result.outcome == "submitted", result
    assert result.tool_variants == RECORDED
    assert result.tools == ["bash(max_output=500)", "read_file(max_lines=50)",
                            "score(every=10)", "submit"]
    (reset,) = [event for event in read_events(out / spec.episode_id)
                if isinstance(event, ResetEvent)]
    assert reset.tools == result.tools
    return result, [json.dumps(request.body) for request in server.requests]


def assert_degraded(bodies: list[str]) -> None:
    """The first request tells the variants; the later ones carry the cut output, the
    first 50 lines of train.py and the refused score."""
    first = json.loads(bodies[0])
    described = json.dumps(first["tools"])
    assert "cut after 500 characters" in described
    assert "Only the first 50 lines" in described and "at most once every 10 steps" in described
    assert '"run_experiment"' not in described  # the tool set leaves the lab tool out
    assert CUT_NOTE in bodies[1] and "x" * 501 not in bodies[1]
    assert "50 lines are shown: 99 more were left out" in bodies[2]
    assert "can be used again at step 13 (this is step 4)" in bodies[4]


@pytest.mark.bwrap
def test_a_claude_episode_sees_and_records_the_variants(
    server: FakeServer, tmp_path: Path
) -> None:
    replies = [anthropic_message(tool_use("bash", {"command": LONG})),
               anthropic_message(tool_use("read_file", {"path": "train.py"})),
               anthropic_message(tool_use("score")),
               anthropic_message(tool_use("score")),
               anthropic_message(tool_use("submit"))]
    _, bodies = run_with_variants("claude", {"base_url": server.url, "max_tokens": 1024},
                                  replies, server, tmp_path)
    assert len(bodies) == 5
    assert_degraded(bodies)


@pytest.mark.bwrap
def test_an_openai_episode_sees_and_records_the_variants(
    server: FakeServer, tmp_path: Path
) -> None:
    replies = [chat_completion(function_call("bash", {"command": LONG})),
               chat_completion(function_call("read_file", {"path": "train.py"})),
               chat_completion(function_call("score")),
               chat_completion(function_call("score")),
               chat_completion(function_call("submit"))]
    _, bodies = run_with_variants("openai", {"base_url": f"{server.url}/v1",
                                             "model": "local-model"},
                                  replies, server, tmp_path)
    assert len(bodies) == 5
    assert_degraded(bodies)


@pytest.mark.bwrap
def test_run_takes_variants_on_the_command_line(server: FakeServer, tmp_path: Path) -> None:
    server.add(anthropic_message(tool_use("bash", {"command": LONG})),
               anthropic_message(tool_use("submit")))
    out = tmp_path / "run"
    shown = CliRunner().invoke(app, [
        "run", "--task", str(TOY_TASK), "--agent", "claude", "--base-url", server.url,
        "--sandbox", "bwrap", "--out", str(out),
        "--tools", "bash( max_output=500, stderr=off ),score(off),read_file"])
    assert shown.exit_code == 0, shown.output
    (path,) = out.glob("*/result.json")
    result = load_result(path)
    assert result.tools == ["bash(max_output=500,stderr=off)", "score(off)", "read_file",
                            "submit"]
    assert result.tool_variants == {"bash": {"max_output": 500, "stderr": "off"},
                                    "score": {"off": True}}
    offered = [tool["name"] for tool in server.requests[0].body["tools"]]
    assert offered == ["bash", "read_file", "submit"]
    assert CUT_NOTE in json.dumps(server.requests[1].body)
