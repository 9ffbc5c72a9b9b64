"""The agent's tools: their JSON Schemas, action parsing, and their execution in a sandbox.

`score`, `submit` and `notepad` are declared here but carried out by the env, which owns
grading and the notepad. `notepad` is a scaffolding option, off unless a run asks for it.
Every sandbox tool runs as the unprivileged agent user, so a tool can do no more than the
agent's own shell could. A tool variant (rdbench/tool_variants.py declares them) reaches a
sandbox tool as its `variant` settings, which change what the reply shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rdbench.sandbox.base import AGENT_HOME, ExecResult, Sandbox, SandboxInputError
from rdbench.tool_variants import FEEDBACK_OFF_REPLY

CONTROL_TOOLS = ("score", "submit", "notepad")


class ActionError(ValueError):
    """An action the env cannot carry out; its message is shown to the agent."""


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave: the text the agent reads, and the facts the env records."""

    text: str
    is_error: bool = False  # the call failed: a non-zero exit, a timeout, a refused input
    exit_code: int | None = None  # of the command (bash, python); None where none ran
    timed_out: bool = False  # the command ran out of time and was killed
    truncated: bool = False  # the output was cut at the sandbox's cap
    withheld: str | None = None  # the real reply, where a tool variant showed another text


@dataclass(frozen=True)
class ToolCall:
    """One parsed action: a tool name and its input."""

    tool: str
    input: dict[str, Any] = field(default_factory=dict)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_TIMEOUT = {"type": "number", "description": "seconds before the command is killed"}

TOOL_SPECS: dict[str, dict[str, Any]] = {
    "bash": {
        "description": "Run a bash command in your sandbox (cwd: your home, the workspace). "
        "Returns its exit code, stdout and stderr.",
        "input_schema": _schema(
            {"command": {"type": "string"}, "timeout": _TIMEOUT}, ["command"]
        ),
    },
    "python": {
        "description": "Run Python code with the sandbox's python3 (given on stdin).",
        "input_schema": _schema({"code": {"type": "string"}, "timeout": _TIMEOUT}, ["code"]),
    },
    "read_file": {
        "description": "Read a text file; paths are relative to your home.",
        "input_schema": _schema({"path": {"type": "string"}}, ["path"]),
    },
    "write_file": {
        "description": "Create or overwrite a file with the given content.",
        "input_schema": _schema(
            {"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]
        ),
    },
    "edit_file": {
        "description": "Replace one exact occurrence of old_string with new_string in a file. "
        "Fails if old_string is missing or appears more than once.",
        "input_schema": _schema(
            {
                "path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
            },
            ["path", "old_string", "new_string"],
        ),
    },
    "score": {
        "description": "Grade your current workspace on the validation split (not the final "
        "test split) and show the grader's message. Does not end the episode.",
        "input_schema": _schema({}, []),
    },
    "submit": {
        "description": "End the episode: your workspace is graded on the hidden test split.",
        "input_schema": _schema({}, []),
    },
    "notepad": {
        "description": "Replace the content of your notepad: notes kept outside the "
        "conversation and shown to you again when old messages are removed to fit the "
        "context window. Keep your plan, findings and best score there.",
        "input_schema": _schema({"content": {"type": "string"}}, ["content"]),
    },
}
OPTIONAL_TOOLS = ("notepad",)
# In a tool set, this name stands for every lab tool the task declares (see rdbench/lab.py).
LAB_TOOLS = "lab"
DEFAULT_TOOLS = [name for name in TOOL_SPECS if name not in OPTIONAL_TOOLS]


def tool_definitions(
    names: list[str] | None = None, specs: Mapping[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Tool definitions (name, description, input_schema) for the tools in `names`
    (default: every tool but the optional ones), looked up in `specs` (default: the built-in
    tools; an env adds its task's lab tools)."""
    chosen = names or DEFAULT_TOOLS
    table = specs or TOOL_SPECS
    return [{"name": name, **table[name]} for name in chosen]


def parse_action(
    action: Any, allowed: list[str] | None = None,
    specs: Mapping[str, dict[str, Any]] | None = None,
) -> ToolCall:
    """Read an action given as a dict or as its JSON text, its input checked against its
    tool's schema in `specs` (default: the built-in tools); ActionError says what is wrong."""
    if isinstance(action, str | bytes):
        try:
            action = json.loads(action)
        except json.JSONDecodeError as error:
            raise ActionError(
                f"Action is not valid JSON ({error}); send "
                '{"tool": "bash", "input": {"command": "ls"}}'
            ) from error
    if not isinstance(action, dict):
        raise ActionError(f"Action must be an object with 'tool' and 'input', got {action!r:.80}")
    unknown_keys = set(action) - {"tool", "input"}
    if unknown_keys:
        raise ActionError(f"Action has unknown keys {sorted(unknown_keys)}; use 'tool', 'input'")
    tool = action.get("tool")
    table = specs or TOOL_SPECS
    allowed = allowed or list(table)
    if tool not in allowed:
        raise ActionError(f"Unknown tool {tool!r}; available tools: {', '.join(allowed)}")
    tool_input = action.get("input", {})
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise ActionError(f"'input' of {tool} must be an object, got {tool_input!r:.80}")
    schema = table[tool]["input_schema"]
    _check_input(tool, tool_input, schema)
    return ToolCall(tool=tool, input=tool_input)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}
_ARTICLE = {"integer": "an", "object": "an", "array": "an"}
# The JSON Schema keywords the checker understands (a task's lab tool may use only these).
SCHEMA_KEYWORDS = frozenset({
    "type", "description", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minimum", "maximum", "enum", "title",
})
# Inputs passed to a program as an argument, where a NUL byte cannot go (the others go on stdin).
ARGUMENT_INPUTS = ("command", "path")


def schema_problem(schema: Any, where: str = "schema") -> str | None:
    """What in `schema` the input checker cannot apply (an unknown keyword or type, an object
    schema without properties), or None when it can check every input against it."""
    if not isinstance(schema, dict):
        return f"{where} must be an object, got {schema!r:.60}"
    unknown = sorted(set(schema) - SCHEMA_KEYWORDS)
    if unknown:
        return f"{where} uses {unknown}, which the checker does not support; use only " \
            f"{sorted(SCHEMA_KEYWORDS)}"
    kind = schema.get("type")
    if kind not in _JSON_TYPES:
        return f"{where}: type must be one of {sorted(_JSON_TYPES)}, got {kind!r}"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return f"{where}: an object needs 'properties' (an object of schemas)"
        missing = [name for name in schema.get("required", []) if name not in properties]
        if missing:
            return f"{where}: required names {missing}, which are not in its properties"
        for name, inner in properties.items():
            problem = schema_problem(inner, f"{where}.properties.{name}")
            if problem:
                return problem
    if kind == "array":
        if "items" not in schema:
            return f"{where}: an array needs 'items' (the schema of its elements)"
        return schema_problem(schema["items"], f"{where}.items")
    return None


def _check_value(tool: str, value: Any, schema: dict[str, Any], where: str) -> None:
    """ActionError unless `value` (the input at `where`) matches `schema`."""
    expected = schema["type"]
    is_bool = isinstance(value, bool)
    if not isinstance(value, _JSON_TYPES[expected]) or (is_bool and expected != "boolean"):
        article = _ARTICLE.get(expected, "a")
        raise ActionError(f"{tool} input {where} must be {article} {expected}, got {value!r:.80}")
    if "enum" in schema and value not in schema["enum"]:
        raise ActionError(
            f"{tool} input {where} must be one of {schema['enum']}, got {value!r:.80}"
        )
    if expected in ("number", "integer"):
        if "minimum" in schema and value < schema["minimum"]:
            raise ActionError(f"{tool} input {where} must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise ActionError(f"{tool} input {where} must be <= {schema['maximum']}, got {value}")
    if expected == "array" and isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise ActionError(f"{tool} input {where} needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ActionError(f"{tool} input {where} takes at most {schema['maxItems']} items, "
                              f"got {len(value)}")
        for index, item in enumerate(value):
            _check_value(tool, item, schema["items"], f"{where}[{index}]")
    if expected == "object" and isinstance(value, dict):
        _check_object(tool, value, schema, where)


def _check_object(tool: str, value: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    properties = schema["properties"]
    label = "input" if where == "" else f"input {where} needs"
    for name in schema.get("required", []):
        if name not in value:
            need = f"{tool} needs input '{name}'" if where == "" else f"{tool} {label} '{name}'"
            raise ActionError(f"{need}; got keys {sorted(value)}")
    for name, item in value.items():
        if name not in properties:
            if schema.get("additionalProperties", False) is False:
                place = "" if where == "" else f" in {where}"
                raise ActionError(
                    f"{tool} takes no input '{name}'{place}; it takes {sorted(properties)}"
                )
            continue
        _check_value(tool, item, properties[name], f"'{name}'" if where == "" else
                     f"{where}.{name}")


def _check_input(tool: str, tool_input: dict[str, Any], schema: dict[str, Any]) -> None:
    _check_object(tool, tool_input, schema, "")
    for name, value in tool_input.items():
        if name in ARGUMENT_INPUTS and "\0" in str(value):
            raise ActionError(
                f"{tool} input '{name}' holds a NUL byte (\\0), which no command or path can "
                "hold; remove it"
            )


Variant = Mapping[str, Any]  # a tool variant's settings (rdbench/tool_variants.py)
NO_VARIANT: Variant = {}


def format_exec(result: ExecResult, variant: Variant = NO_VARIANT) -> str:
    """A command's result as the text the agent reads, as the tool's `variant` shows it
    (`stderr="off"`: no stderr; `max_output=N`: stdout, then stderr, cut after N characters
    in all, with a note)."""
    stdout = result.stdout
    stderr = "" if variant.get("stderr") == "off" else result.stderr
    limit = variant.get("max_output")
    cut = 0
    if limit is not None:
        cut = max(len(stdout) + len(stderr) - limit, 0)
        stderr = stderr[: max(limit - len(stdout), 0)]
        stdout = stdout[:limit]
    parts = [f"exit code: {result.returncode}"]
    if result.timed_out:
        parts.append("[the command timed out and was killed]")
    if result.truncated:
        parts.append("[output was truncated at the sandbox's cap]")
    if stdout:
        parts.append(f"stdout:\n{stdout}")
    if stderr:
        parts.append(f"stderr:\n{stderr}")
    if cut:
        parts.append(f"[output cut at {limit} characters: {cut} more were not shown]")
    return "\n".join(parts)


def exec_result(result: ExecResult, variant: Variant = NO_VARIANT) -> ToolResult:
    """A command's result as a tool result: its text (format_exec) and its facts."""
    return ToolResult(
        format_exec(result, variant),
        is_error=result.returncode != 0 or result.timed_out,
        exit_code=result.returncode,
        timed_out=result.timed_out,
        truncated=result.truncated,
    )


def _timeout(tool_input: dict[str, Any], default: float) -> float:
    requested = float(tool_input.get("timeout", default))
    if requested <= 0:
        raise ActionError(f"timeout must be a positive number of seconds, got {requested}")
    return min(requested, default)


def _bash(
    sandbox: Sandbox, tool_input: dict[str, Any], default_timeout: float, variant: Variant
) -> ToolResult:
    result = sandbox.exec(
        ["bash", "-c", tool_input["command"]], timeout=_timeout(tool_input, default_timeout)
    )
    return exec_result(result, variant)


def _python(
    sandbox: Sandbox, tool_input: dict[str, Any], default_timeout: float, variant: Variant
) -> ToolResult:
    result = sandbox.exec(
        ["python3", "-"],
        input=tool_input["code"].encode("utf-8"),
        timeout=_timeout(tool_input, default_timeout),
    )
    return exec_result(result, variant)


def _read_text(sandbox: Sandbox, path: str) -> str:
    result = sandbox.exec(["cat", "--", path], timeout=60)
    if result.returncode != 0:
        raise ActionError(f"Cannot read {path}: {result.stderr.strip()}")
    return result.stdout


def _write_text(sandbox: Sandbox, path: str, content: str) -> None:
    script = 'mkdir -p -- "$(dirname -- "$0")" && cat > "$0"'
    result = sandbox.exec(["sh", "-c", script, path], input=content.encode("utf-8"), timeout=60)
    if result.returncode != 0:
        raise ActionError(f"Cannot write {path}: {result.stderr.strip()}")


def _read_file(
    sandbox: Sandbox, tool_input: dict[str, Any], _: float, variant: Variant
) -> ToolResult:
    text = _read_text(sandbox, tool_input["path"])
    limit = variant.get("max_lines")
    lines = text.splitlines(keepends=True)
    if limit is None or len(lines) <= limit:
        return ToolResult(text)
    shown = "".join(lines[:limit])
    note = f"[only the first {limit} lines are shown: {len(lines) - limit} more were left out]"
    return ToolResult(f"{shown}{'' if shown.endswith(chr(10)) else chr(10)}{note}",
                      truncated=True)


def _write_file(
    sandbox: Sandbox, tool_input: dict[str, Any], _: float, variant: Variant
) -> ToolResult:
    content = tool_input["content"]
    _write_text(sandbox, tool_input["path"], content)
    return ToolResult(f"Wrote {len(content.encode('utf-8'))} bytes to {tool_input['path']}")


def _edit_file(
    sandbox: Sandbox, tool_input: dict[str, Any], _: float, variant: Variant
) -> ToolResult:
    if variant.get("feedback") != "off":
        return _apply_edit(sandbox, tool_input)
    try:
        real = _apply_edit(sandbox, tool_input).text
    except ActionError as error:
        real = f"Error: {error}"
    return ToolResult(FEEDBACK_OFF_REPLY, withheld=real)


def _apply_edit(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolResult:
    path, old, new = tool_input["path"], tool_input["old_string"], tool_input["new_string"]
    if not old:
        raise ActionError("old_string must not be empty; use write_file to create a file")
    text = _read_text(sandbox, path)
    count = text.count(old)
    if count == 0:
        raise ActionError(f"old_string was not found in {path}; read the file and copy it exactly")
    if count > 1:
        raise ActionError(
            f"old_string appears {count} times in {path}; include more surrounding text "
            "so it matches exactly once"
        )
    _write_text(sandbox, path, text.replace(old, new, 1))
    return ToolResult(f"Edited {path}: replaced 1 occurrence")


SANDBOX_TOOLS: dict[str, Callable[[Sandbox, dict[str, Any], float, Variant], ToolResult]] = {
    "bash": _bash,
    "python": _python,
    "read_file": _read_file,
    "write_file": _write_file,
    "edit_file": _edit_file,
}


def execute_tool(
    sandbox: Sandbox, call: ToolCall, *, default_timeout: float, variant: Variant = NO_VARIANT
) -> ToolResult:
    """Carry out a sandbox tool call, as the tool's `variant` (its settings, see
    rdbench/tool_variants.py) shows it: the observation text and its facts (exit code,
    timeout, truncation).

    Raises ActionError (shown to the agent) for a tool that cannot do what was asked.
    """
    if call.tool not in SANDBOX_TOOLS:
        raise ActionError(f"{call.tool} is not a sandbox tool")
    try:
        return SANDBOX_TOOLS[call.tool](sandbox, call.input, default_timeout, variant)
    except SandboxInputError as error:
        raise ActionError(str(error)) from error


def run_tool(sandbox: Sandbox, call: ToolCall, *, default_timeout: float) -> str:
    """Carry out a sandbox tool call and return only the observation text (see
    `execute_tool` for its facts too). Raises ActionError as `execute_tool` does."""
    return execute_tool(sandbox, call, default_timeout=default_timeout).text


__all__ = [
    "AGENT_HOME",
    "CONTROL_TOOLS",
    "DEFAULT_TOOLS",
    "LAB_TOOLS",
    "OPTIONAL_TOOLS",
    "TOOL_SPECS",
    "ActionError",
    "ToolCall",
    "ToolResult",
    "exec_result",
    "execute_tool",
    "format_exec",
    "parse_action",
    "run_tool",
    "tool_definitions",
]
