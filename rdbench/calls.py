"""The one syntax for naming a thing with settings: `name`, `name(flag)` or
`name(key=value, ...)`, as `--scaffold summary(at=0.7)` and `--tools bash(max_output=500)`
write it.

A value is read as JSON where it can be (`500`, `0.7`, `true`, `"text"`), else kept as text
(`off`, `every`); a bare word inside the brackets is a flag, read as `word=true`. Two specs
that say the same thing have the same `canonical` text (settings sorted, no spaces), which is
what an episode's identity and records hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[A-Za-z_./~][A-Za-z0-9_.:/~-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CallSpecError(ValueError):
    """A spec that is not `name`, `name(flag)` or `name(key=value, ...)`; the message says
    what is wrong and shows the form."""


@dataclass(frozen=True)
class CallSpec:
    """A name and its settings, as written in `name(key=value, ...)`."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        """The spec as one text: settings sorted by key, values as compact JSON (a flag set
        to true is written bare)."""
        if not self.settings:
            return self.name
        parts = [
            key if value is True else f"{key}={_value_text(value)}"
            for key, value in sorted(self.settings.items())
        ]
        return f"{self.name}({','.join(parts)})"

    def __str__(self) -> str:
        return self.canonical


def _value_text(value: Any) -> str:
    if isinstance(value, str) and _KEY.match(value) and value not in ("true", "false", "null"):
        return value
    return json.dumps(value, separators=(",", ":"))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_call(text: str, what: str = "spec") -> CallSpec:
    """Read `name`, `name(flag)` or `name(key=value, ...)`; CallSpecError (naming `what`,
    e.g. "--scaffold") when it is none of them."""
    given = text.strip()
    form = f"write {what} as NAME or NAME(key=value, ...), e.g. summary(at=0.7)"
    name, bracket, rest = given.partition("(")
    name = name.strip()
    if not name or not _NAME.match(name):
        raise CallSpecError(f"{what} {text!r}: {name!r} is not a name; {form}")
    if not bracket:
        return CallSpec(name)
    if not rest.endswith(")"):
        raise CallSpecError(f"{what} {text!r}: the '(' is not closed at the end; {form}")
    settings: dict[str, Any] = {}
    inner = rest[:-1].strip()
    for part in split_top_level(inner) if inner else []:
        key, equals, value = part.partition("=")
        key = key.strip()
        if not _KEY.match(key):
            raise CallSpecError(f"{what} {text!r}: {part.strip()!r} is not key=value or a "
                                f"flag; {form}")
        if key in settings:
            raise CallSpecError(f"{what} {text!r}: {key!r} is given twice")
        settings[key] = _value(value.strip()) if equals else True
    return CallSpec(name, settings)


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """`text` split at each `separator` outside brackets and quotes, parts stripped:
    "bash(max_output=500,stderr=off),score" gives ["bash(max_output=500,stderr=off)",
    "score"]. CallSpecError for unbalanced brackets."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for index, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                raise CallSpecError(f"{text!r}: a closing bracket at {index} has no opening one")
        elif char == separator and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    if depth != 0 or quote:
        raise CallSpecError(f"{text!r}: a bracket or quote is not closed")
    parts.append(text[start:].strip())
    return [part for part in parts if part]
