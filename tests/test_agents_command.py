"""The command adapter: real subprocesses speaking the JSON-lines protocol."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import structlog
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.agents import AgentConfigError, AgentError, TaskInfo, make_agent
from rdbench.agents.command import CommandAgent
from rdbench.cli import app
from rdbench.records import load_result
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.tools import tool_definitions
from rdbench.transcript import read_transcript

ROOT = Path(__file__).parent.parent
ECHO_AGENT = ROOT / "examples" / "echo_agent.py"


def task_info() -> TaskInfo:
    task = load_task(TOY_TASK)
    return TaskInfo(task, task.instructions, tool_definitions(), {"steps": 20})


def program(tmp_path: Path, source: str) -> str:
    """A Python agent program written to a file; its command line."""
    path = tmp_path / "agent_program.py"
    path.write_text(source)
    return f"{sys.executable} {path}"


def command_agent(command: str) -> CommandAgent:
    return make_agent("command", command=command, reply_timeout=20)  # type: ignore[return-value]


def test_example_agent_plays_the_protocol() -> None:
    agent = command_agent(f"{sys.executable} {ECHO_AGENT}")
    try:
        agent.reset(task_info(), "the briefing")
        assert agent.act("the briefing") == {"tool": "bash", "input": {"command": "ls -la"}}
        assert agent.act("answer.py")["tool"] == "score"
        assert agent.act("Validation score: 1.5")["tool"] == "submit"
        assert agent.usage().cost_usd == 0.0
    finally:
        agent.close()
    assert agent._process is None


def test_example_agent_imports_nothing_of_rdbench() -> None:
    source = ECHO_AGENT.read_text()
    assert "rdbench" not in "".join(
        line for line in source.splitlines() if line.startswith(("import", "from"))
    )


def test_reset_message_carries_the_task_and_usage_is_taken(tmp_path: Path) -> None:
    command = program(tmp_path, """
import json, sys
first = json.loads(sys.stdin.readline())
print(json.dumps({"type": "log", "message": "hello"}), flush=True)
usage = {"input_tokens": 1_000_000, "output_tokens": 0, "model": "gpt-4o"}
reply = {"type": "action", "tool": "bash", "input": {"command": first["task"]["id"]},
         "usage": usage}
print(json.dumps(reply), flush=True)
sys.stdin.readline()
""")
    agent = command_agent(command)
    try:
        agent.reset(task_info(), "brief")
        assert agent.act("brief") == {"tool": "bash", "input": {"command": "toy-task"}}
        assert agent.usage().input_tokens == 1_000_000
        assert agent.usage().cost_usd == pytest.approx(2.5)  # priced from the table
    finally:
        agent.close()


def test_program_that_crashes_is_a_clear_error(tmp_path: Path) -> None:
    command = program(tmp_path, """
import sys
sys.stdin.readline()
print("Traceback: something broke in the agent", file=sys.stderr)
sys.exit(3)
""")
    agent = command_agent(command)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match=r"exited with code 3 before sending an action") as error:
        agent.act("brief")
    assert "something broke in the agent" in str(error.value)
    agent.close()


def test_program_printing_garbage_is_a_clear_error(tmp_path: Path) -> None:
    command = program(tmp_path, "import sys\nsys.stdin.readline()\nprint('hello there')\n")
    agent = command_agent(command)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match=r"not a JSON message on stdout: 'hello there'"):
        agent.act("brief")
    agent.close()


def test_silent_program_times_out(tmp_path: Path) -> None:
    command = program(tmp_path, "import sys, time\nsys.stdin.readline()\ntime.sleep(30)\n")
    agent = make_agent("command", command=command, reply_timeout=0.5, exit_grace=0.2)
    agent.reset(task_info(), "brief")
    with pytest.raises(AgentError, match=r"no action within 0.5 s"):
        agent.act("brief")
    agent.close()  # kills it after the grace period


def test_missing_program_fails_before_the_episode() -> None:
    with pytest.raises(AgentConfigError, match="cannot find the program"):
        make_agent("command", command="no-such-agent-program --flag")
    with pytest.raises(AgentConfigError, match="needs --command"):
        make_agent("command")


@pytest.mark.docker
def test_command_agent_episode_from_the_command_line(tmp_path: Path, sandbox_image: str) -> None:
    try:
        result = CliRunner().invoke(app, [
            "run", "--task", str(TOY_TASK), "--agent", "command", "--out", str(tmp_path),
            "--command", f"{sys.executable} {ECHO_AGENT}",
        ])
    finally:
        structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    saved = load_result(folder)
    assert saved.outcome == "submitted" and saved.steps == 3
    assert saved.normalized_score == 0.0
    kinds = [event["type"] for event in read_transcript(folder)]
    assert "score" in kinds and kinds[-2:] == ["grade", "usage"]


@pytest.mark.docker
@pytest.mark.parametrize("failure", ["crash", "garbage"])
def test_failing_program_ends_the_episode_which_is_still_graded(
    tmp_path: Path, sandbox_image: str, failure: str
) -> None:
    write = {"type": "action", "tool": "write_file",
             "input": {"path": "answer.py", "content": "print(3)"}}
    last = "sys.exit(2)" if failure == "crash" else "print('{oops', flush=True)"
    command = program(tmp_path, f"""
import json, sys
sys.stdin.readline()
print(json.dumps({write!r}), flush=True)
sys.stdin.readline()
{last}
""")
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="command",
                       agent_options={"command": command})
    out = tmp_path / "runs"
    result = run_episode(spec, out)
    assert result.outcome == "agent_error" and result.truncated
    expected = "exited with code 2" if failure == "crash" else "not a JSON message"
    assert expected in (result.agent_error or "")
    assert result.raw_score == 3.0 and result.normalized_score == pytest.approx(0.5)
    events = read_transcript(out / spec.episode_id)
    assert any(e["type"] == "error" and expected in e["message"] for e in events)
