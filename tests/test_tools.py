"""Action parsing: malformed actions give errors that say what was wrong."""

from __future__ import annotations

import json

import pytest

from rdbench.sandbox.base import ExecResult
from rdbench.tools import ActionError, exec_result, format_exec, parse_action, tool_definitions


def test_dict_and_json_text_actions_parse_the_same() -> None:
    action = {"tool": "bash", "input": {"command": "ls"}}
    assert parse_action(action) == parse_action(json.dumps(action))


@pytest.mark.parametrize(
    ("action", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        ({"tool": "rm"}, "Unknown tool 'rm'"),
        ({"tool": "bash", "input": {}}, "needs input 'command'"),
        ({"tool": "bash", "input": {"command": 3}}, "must be a string"),
        ({"tool": "bash", "input": {"command": "ls", "cwd": "/"}}, "takes no input 'cwd'"),
        ({"tool": "bash", "input": "ls"}, "must be an object"),
        ({"tool": "bash", "args": {}}, "unknown keys"),
    ],
)
def test_malformed_action_names_the_problem(action: object, fragment: str) -> None:
    with pytest.raises(ActionError, match=fragment):
        parse_action(action)


def test_tool_not_in_chosen_set_is_refused() -> None:
    with pytest.raises(ActionError, match="available tools: bash, submit"):
        parse_action({"tool": "python", "input": {"code": "1"}}, ["bash", "submit"])


def test_tool_definitions_have_json_schemas() -> None:
    definitions = {d["name"]: d for d in tool_definitions()}
    assert set(definitions) == {
        "bash", "python", "read_file", "write_file", "edit_file", "score", "submit"
    }
    assert definitions["edit_file"]["input_schema"]["required"] == [
        "path", "old_string", "new_string"
    ]


@pytest.mark.parametrize(
    "action",
    [
        {"tool": "read_file", "input": {"path": "a\u0000b"}},
        {"tool": "bash", "input": {"command": "echo \u0000"}},
    ],
)
def test_a_nul_byte_in_a_command_or_path_is_an_action_error(action: dict[str, object]) -> None:
    with pytest.raises(ActionError, match="NUL byte"):
        parse_action(action)


def test_a_nul_byte_in_content_given_on_stdin_is_accepted() -> None:
    action = {"tool": "write_file", "input": {"path": "a.bin", "content": "x\u0000y"}}
    assert parse_action(action).input["content"] == "x\u0000y"


@pytest.mark.parametrize(
    ("result", "facts"),
    [
        (ExecResult(0, "ok\n", ""), (False, 0, False, False)),
        (ExecResult(3, "", "bad\n"), (True, 3, False, False)),
        (ExecResult(-9, "", "", timed_out=True), (True, -9, True, False)),
        (ExecResult(0, "x" * 10, "", truncated=True), (False, 0, False, True)),
    ],
)
def test_a_command_result_carries_its_facts_beside_its_text(
    result: ExecResult, facts: tuple[bool, int, bool, bool]
) -> None:
    made = exec_result(result)
    assert (made.is_error, made.exit_code, made.timed_out, made.truncated) == facts
    assert made.text == format_exec(result)
