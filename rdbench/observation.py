"""A tool call's observation as the agent receives it: the text, with what the env knows of it.

`Observation` is a `str` (the text the agent sees, possibly truncated), so every agent that
reads text keeps working; it also carries the structured facts the env recorded in `info`
(which tool ran, whether it failed, its exit code, whether it timed out or was truncated), so
the built-in agents read those instead of parsing the observation's wording.
"""

from __future__ import annotations

from typing import Any


class Observation(str):
    """Observation text plus its structured facts (None where a fact does not apply)."""

    tool: str | None
    is_error: bool
    exit_code: int | None
    timed_out: bool
    truncated: bool

    def __new__(
        cls,
        text: str,
        *,
        tool: str | None = None,
        is_error: bool = False,
        exit_code: int | None = None,
        timed_out: bool = False,
        truncated: bool = False,
    ) -> Observation:
        """The observation `text` with its facts."""
        made = super().__new__(cls, text)
        made.tool, made.is_error, made.exit_code = tool, is_error, exit_code
        made.timed_out, made.truncated = timed_out, truncated
        return made

    def facts(self) -> dict[str, Any]:
        """The structured facts, as `info["observation"]` carries them."""
        return {"tool": self.tool, "is_error": self.is_error, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "truncated": self.truncated}

    @classmethod
    def from_info(cls, text: str, info: dict[str, Any]) -> Observation:
        """The observation `text` with the facts of `info["observation"]` (none if absent)."""
        return cls(text, **info.get("observation", {}))
