"""Tool variants: a tool made worse on purpose, to measure how much bad tooling hurts.

A tool set entry is a tool's name, optionally with a variant in the one spec syntax of
rdbench/calls.py: `bash(max_output=500)`, `bash(stderr=off)`, `read_file(max_lines=50)`,
`edit_file(feedback=off)`, `score(every=10)`, or `NAME(off)` for any tool. Every variant is
declared here, with its meaning; `parse_tool` checks an entry against these declarations,
and what the agent is told about a variant (`describe`) is added to the tool's description.

The variants:
- `max_output=N` (bash, python): the command's output (stdout, then stderr) is cut after
  its first N characters; a note in the reply says how many characters were not shown.
- `stderr=off` (bash, python): the command's stderr is left out of the reply; the exit code
  and stdout are shown as usual.
- `max_lines=N` (read_file): only the first N lines of the file are shown, then a note saying
  how many lines were left out.
- `feedback=off` (edit_file): every call, whether the edit applied or not (old_string
  missing, ambiguous, file unreadable), gets the same reply, `FEEDBACK_OFF_REPLY`, and is never
  marked as an error; the real outcome is kept in the transcript's observation event
  (`text`), while `shown` holds what the agent saw.
- `every=N` (score): a validation grading at most once every N steps: after a grading at
  step s the next one can be at step s+N; a call before that is refused with a reply that
  says at which step score can be used again (the refused call is a step).
- `off` (any tool but submit): the tool is not offered at all; the tool set still lists it
  (as `NAME(off)`), so the run's identity and records say it was taken away.

Settings equal to a default (`stderr=on`, `feedback=on`) are dropped, so an entry's
`canonical` text is the same for two entries that behave the same.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from rdbench.calls import CallSpec, CallSpecError, parse_call

OFF = "off"
SWITCH_VALUES = ("on", "off")
FEEDBACK_OFF_REPLY = "edit_file request received (this run does not say whether it applied)."
# What no variant may change: without submit an episode can only end on a budget, and `lab`
# stands for all the task's own tools (name one to change it).
FIXED_TOOLS = ("submit", "lab")


class ToolVariantError(ValueError):
    """A tool set entry that names an unknown tool, variant or option, or gives an option a
    value of the wrong type or range; the message names the valid ones."""


@dataclass(frozen=True)
class Option:
    """One setting of a tool variant: its kind ("count": an integer >= 1, or "switch": on or
    off, on by default), what it does, and the sentence added to the tool's description."""

    kind: str
    meaning: str
    told: Callable[[Any], str]


def _count(meaning: str, told: Callable[[Any], str]) -> Option:
    return Option("count", meaning, told)


def _switch(meaning: str, told: str) -> Option:
    return Option("switch", meaning, lambda _: told)


_MAX_OUTPUT = _count(
    "cut the command's output (stdout, then stderr) after N characters, with a note",
    lambda n: f"Its output (stdout, then stderr) is cut after {n} characters; a note says how "
    "many were not shown.",
)
_STDERR = _switch("off: leave the command's stderr out of the reply",
                  "Its stderr is not shown, only the exit code and stdout.")

VARIANTS: dict[str, dict[str, Option]] = {
    "bash": {"max_output": _MAX_OUTPUT, "stderr": _STDERR},
    "python": {"max_output": _MAX_OUTPUT, "stderr": _STDERR},
    "read_file": {"max_lines": _count(
        "show only the first N lines of the file, with a note",
        lambda n: f"Only the first {n} lines of the file are shown; a note says how many "
        "were left out.",
    )},
    "edit_file": {"feedback": _switch(
        "off: the same reply whether or not the edit applied, never an error",
        "The reply does not say whether the edit applied (it is the same either way).",
    )},
    "score": {"every": _count(
        "grade at most once every N steps; a call sooner says when score can be used again",
        lambda n: f"It can be used at most once every {n} steps; a call sooner is refused "
        "and says at which step it can be used again.",
    )},
}


@dataclass(frozen=True)
class ToolChoice(CallSpec):
    """One entry of a tool set: a tool and its variant's settings (empty: the tool as is);
    `canonical` is the text identity and records hold (`bash(max_output=500,stderr=off)`)."""

    @property
    def off(self) -> bool:
        """The tool is taken away (`NAME(off)`)."""
        return self.settings.get(OFF) is True


def options_of(tool: str) -> list[str]:
    """The options a variant of `tool` may set (`off` for every tool but submit)."""
    if tool in FIXED_TOOLS:
        return []
    return [*VARIANTS.get(tool, {}), OFF]


def parse_tool(entry: str, known: Collection[str]) -> ToolChoice:
    """Read one tool set entry (`bash`, `bash(max_output=500)`, `score(off)`), its tool one
    of `known` and its variant one declared in VARIANTS; ToolVariantError saying what is
    wrong and what is valid otherwise."""
    try:
        spec = parse_call(entry, "a --tools entry")
    except CallSpecError as error:
        raise ToolVariantError(str(error)) from error
    if spec.name not in known:
        raise ToolVariantError(f"Unknown tool {spec.name!r} in {entry!r}; available: "
                               f"{', '.join(known)}")
    valid = options_of(spec.name)
    settings: dict[str, Any] = {}
    for key, value in spec.settings.items():
        if key not in valid:
            takes = f"it takes {', '.join(valid)}" if valid else "it takes no variant"
            raise ToolVariantError(f"{spec.name} has no option {key!r} (in {entry!r}); "
                                   f"{takes}. Variants: {variant_help()}")
        checked = _checked(spec.name, key, value, entry)
        if checked is not None:
            settings[key] = checked
    if settings.get(OFF) and len(settings) > 1:
        raise ToolVariantError(f"{entry!r}: {spec.name}(off) takes the tool away; it takes no "
                               "other option")
    return ToolChoice(spec.name, settings)


def _checked(tool: str, key: str, value: Any, entry: str) -> Any:
    """`value` of option `key`, checked (None for a default, which is dropped)."""
    if key == OFF:
        if value is not True:
            raise ToolVariantError(f"{entry!r}: write {tool}(off) to take the tool away, "
                                   f"without a value")
        return True
    option = VARIANTS[tool][key]
    if option.kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ToolVariantError(f"{entry!r}: {key} must be a whole number >= 1, got "
                                   f"{value!r} ({option.meaning})")
        return value
    if value not in SWITCH_VALUES:
        raise ToolVariantError(f"{entry!r}: {key} must be on or off, got {value!r} "
                               f"({option.meaning})")
    return None if value == "on" else value


def parse_tool_set(
    entries: list[str], known: Collection[str], where: str = ""
) -> list[ToolChoice]:
    """Every entry of a tool set read by `parse_tool`; ToolVariantError naming every unknown
    tool at once (`where` says where the set was given, e.g. " in --tools"), and for a tool
    given twice."""
    unknown = [name for name in (_name(entry) for entry in entries) if name not in known]
    if unknown:
        raise ToolVariantError(f"Unknown tools {unknown}{where}; available: {', '.join(known)}")
    choices = [parse_tool(entry, known) for entry in entries]
    names = [choice.name for choice in choices]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ToolVariantError(f"Tools {twice} are given more than once; give each tool once, "
                               "with all its settings, e.g. bash(max_output=500,stderr=off)")
    return choices


def _name(entry: str) -> str:
    try:
        return parse_call(entry, "a --tools entry").name
    except CallSpecError as error:
        raise ToolVariantError(str(error)) from error


def describe(tool: str, settings: dict[str, Any]) -> str:
    """What the agent is told about `tool`'s variant: sentences for its tool description
    ("" for the tool as is)."""
    options = VARIANTS.get(tool, {})
    return " ".join(options[key].told(value) for key, value in sorted(settings.items())
                    if key in options)


def variant_help() -> str:
    """Every declared variant in one line, for error messages and --help."""
    parts = [f"{tool}({key}={'N' if option.kind == 'count' else 'off'})"
             for tool, options in VARIANTS.items() for key, option in options.items()]
    return ", ".join([*parts, "NAME(off) for any tool but submit"])


__all__ = [
    "FEEDBACK_OFF_REPLY",
    "OFF",
    "VARIANTS",
    "Option",
    "ToolChoice",
    "ToolVariantError",
    "describe",
    "options_of",
    "parse_tool",
    "parse_tool_set",
    "variant_help",
]
