"""Lab tools: a task's own tools ([[tools]] in task.toml), run in a lab sandbox of the episode's
that the agent's sandbox never sees; their inputs are checked, their failures are observations,
and the lab sandbox ends with the episode. The fixture task (tests/fixtures/lab-task) has a
`lookup` tool that reads lab/secret.txt, and a `nap` tool that outlives its timeout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS

from rdbench.env import RDEnv
from rdbench.task import TaskSpecError, load_task
from rdbench.transcript import Transcript, read_transcript

LAB_TASK = Path(__file__).parent / "fixtures" / "lab-task"
SECRET = (LAB_TASK / "lab" / "secret.txt").read_text().strip()


def _act(env: RDEnv, tool: str, **tool_input: Any) -> tuple[str, dict[str, Any]]:
    observation, _, _, _, info = env.step({"tool": tool, "input": tool_input})
    return observation, info


def _lab_is_running(sandbox: Any, backend: str, docker_client: Any) -> bool:
    """Whether the lab sandbox's container (docker) or host folder (bwrap) still exists."""
    if backend == "bwrap":
        return bool(Path(sandbox.dir).exists())
    found = docker_client.containers.list(all=True, filters={"id": sandbox.id})
    return bool(found)


@pytest.fixture(scope="module", params=BACKENDS)
def episode(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RDEnv, Path]]:
    """One episode of the lab task on each backend, shared by the tests that only step it."""
    if request.param == "docker":
        request.getfixturevalue("sandbox_image")
    else:
        request.getfixturevalue("bwrap_rootfs")
    folder = tmp_path_factory.mktemp(f"lab-{request.param}")
    env = RDEnv(load_task(LAB_TASK), sandbox=request.param, transcript=Transcript(folder))
    env.reset()
    yield env, folder
    env.close()


def test_lab_tool_reads_the_labs_hidden_file_as_root_in_lab(episode: tuple[RDEnv, Path]) -> None:
    env, folder = episode
    assert {"lookup", "nap", "bash", "submit"} <= set(env.tools)  # offered by default
    observation, info = _act(env, "lookup", key="alpha", repeat=2)
    assert "error" not in info, observation
    assert observation.count(f"alpha -> {SECRET} (uid 0, cwd /grader/lab)") == 2
    events = read_transcript(folder)
    action, seen = events[-2], events[-1]
    assert (action["type"], action["tool"], action["input"]) == (
        "action", "lookup", {"key": "alpha", "repeat": 2}
    )
    assert seen["type"] == "observation" and SECRET in seen["text"]


def test_agents_sandbox_cannot_see_the_labs_files(episode: tuple[RDEnv, Path]) -> None:
    env, _ = episode
    _act(env, "lookup", key="warm-up")  # the lab sandbox is running now
    observation, _ = _act(
        env, "bash",
        command="ls -la /grader/lab 2>&1; find / -name 'secret.txt' 2>/dev/null; "
        f"grep -rs {SECRET} /home /tmp /var/tmp /grader /opt; echo done",
    )
    assert "done" in observation
    assert SECRET not in observation.replace(f"grep -rs {SECRET}", "")
    assert "ls: cannot access '/grader/lab'" in observation
    assert "secret.txt" not in observation


@pytest.mark.parametrize(
    ("tool_input", "expected"),
    [
        pytest.param({}, "lookup needs input 'key'", id="missing"),
        pytest.param({"key": 3}, "input 'key' must be a string", id="wrong-type"),
        pytest.param({"key": "a", "repeat": 9}, "'repeat' must be <= 3", id="above-maximum"),
        pytest.param({"key": "a", "repeat": True}, "must be an integer", id="bool-for-integer"),
        pytest.param({"key": "a", "path": "/"}, "takes no input 'path'", id="unknown-input"),
    ],
)
def test_lab_tool_input_is_checked_against_its_schema(
    episode: tuple[RDEnv, Path], tool_input: dict[str, Any], expected: str
) -> None:
    env, _ = episode
    observation, info = _act(env, "lookup", **tool_input)
    assert observation.startswith("Error: ")
    assert expected in info["error"]


def test_failing_lab_command_is_an_error_observation(episode: tuple[RDEnv, Path]) -> None:
    env, _ = episode
    observation, info = _act(env, "lookup", key="fail")
    assert observation.startswith("Error: lookup failed (exit code 3).")
    assert "the key 'fail' always fails" in observation
    assert "exit code 3" in info["error"]
    observation, _ = _act(env, "lookup", key="after")  # the lab still serves
    assert f"after -> {SECRET}" in observation


def test_lab_command_past_its_timeout_is_stopped(episode: tuple[RDEnv, Path]) -> None:
    env, _ = episode
    observation, info = _act(env, "nap")
    assert observation.startswith("Error: nap timed out after 2 s and was stopped")
    assert "timed out" in info["error"]


def test_lab_sandbox_starts_on_first_call_and_is_gone_after_close(
    request: pytest.FixtureRequest, backend: str
) -> None:
    backend_name = backend
    docker_client = request.getfixturevalue("docker_client") if backend == "docker" else None
    env = RDEnv(load_task(LAB_TASK), sandbox=backend_name, budget={"steps": 3})
    try:
        _, info = env.reset()
        assert {"lookup", "nap"} <= {tool["name"] for tool in info["tools"]}
        assert env._lab is not None and not env._lab.started
        _act(env, "lookup", key="one")
        lab = env._lab._sandbox
        assert lab is not None and _lab_is_running(lab, backend_name, docker_client)
        observation, _ = _act(env, "lookup", key="two")  # the same lab serves again
        assert env._lab._sandbox is lab and f"two -> {SECRET}" in observation
        _, _, _, truncated, _ = env.step({"tool": "lookup", "input": {"key": "three"}})
        assert truncated  # the lab tool counted against the step budget (3)
        assert not _lab_is_running(lab, backend_name, docker_client)
    finally:
        env.close()


def test_a_tool_set_names_lab_tools_one_by_one_or_all_as_lab() -> None:
    task = load_task(LAB_TASK)
    assert RDEnv(task, tools=["bash", "lab"]).tools == ["bash", "lookup", "nap", "submit"]
    assert RDEnv(task, tools=["lookup"]).tools == ["lookup", "submit"]
    assert "lookup" not in RDEnv(task, tools=["bash"]).tools
    with pytest.raises(ValueError, match="Unknown tools \\['lookup'\\]"):
        RDEnv(load_task(Path(__file__).parent / "fixtures" / "toy-task"), tools=["lookup"])


# --- a malformed declaration ------------------------------------------------------------------

TOOL = """
[[tools]]
name = "probe"
description = "a probe"
input_schema = "lab/lookup.schema.json"
command = ["python3", "lookup.py"]
"""


def _task_with(tmp_path: Path, tools: str, schema: Any = None, lab: bool = True) -> Path:
    folder = tmp_path / "lab-task"
    shutil.copytree(LAB_TASK, folder)
    toml = (folder / "task.toml").read_text()
    (folder / "task.toml").write_text(toml[: toml.index("[[tools]]")] + tools)
    if schema is not None:
        (folder / "lab" / "lookup.schema.json").write_text(json.dumps(schema))
    if not lab:
        shutil.rmtree(folder / "lab")
    return folder


@pytest.mark.parametrize(
    ("tools", "schema", "lab", "expected"),
    [
        pytest.param(TOOL + 'shell = true\n', None, True, "unknown field [tools.0] shell",
                     id="unknown-key"),
        pytest.param(TOOL.replace('command = ["python3", "lookup.py"]\n', ""), None, True,
                     "missing required field [tools.0] command", id="missing-command"),
        pytest.param(TOOL.replace("lookup.schema.json", "absent.json"), None, True,
                     "input_schema 'lab/absent.json' is no file inside the task folder",
                     id="missing-schema-file"),
        pytest.param(TOOL.replace("lab/lookup.schema.json", "../toy-task/task.toml"), None,
                     True, "is no file inside the task folder", id="schema-outside-task"),
        pytest.param(TOOL.replace('"probe"', '"bash"'), None, True,
                     "the name clashes with a built-in tool", id="built-in-name"),
        pytest.param(TOOL.replace('"probe"', '"lab"'), None, True,
                     "the name clashes with a built-in tool", id="tool-set-name"),
        pytest.param(TOOL + TOOL, None, True, "declared more than once", id="duplicate"),
        pytest.param(TOOL.replace('"probe"', '"Probe Tool"'), None, True,
                     "[tools.0] name: String should match pattern", id="bad-name"),
        pytest.param(TOOL, {"type": "object", "properties": {}, "oneOf": []}, True,
                     "uses ['oneOf'], which the checker does not support", id="schema-keyword"),
        pytest.param(TOOL, {"type": "array", "items": {"type": "string"}}, True,
                     "a tool's input must be an object", id="schema-not-object"),
        pytest.param(TOOL, None, False, "a task with [[tools]] needs a lab/ folder",
                     id="no-lab-folder"),
    ],
)
def test_malformed_tool_declaration_is_refused_with_the_reason(
    tmp_path: Path, tools: str, schema: Any, lab: bool, expected: str
) -> None:
    with pytest.raises(TaskSpecError) as raised:
        load_task(_task_with(tmp_path, tools, schema, lab))
    assert expected in str(raised.value)
