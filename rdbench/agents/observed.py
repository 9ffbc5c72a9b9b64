"""What the built-in agents read of an observation: its structured facts when the runner
handed them an `Observation`, else (a plain str from another caller) the text's wording.

Facts travel as fields (`rdbench.observation.Observation`); the wording is only a fallback
for callers that hand the agent text alone.
"""

from __future__ import annotations

import re

from rdbench.observation import Observation

EXIT_LINE = re.compile(r"^exit code: (-?\d+)$", re.MULTILINE)
CUT_MARK = re.compile(r"\[\.\.\. \d+ characters cut \.\.\.\]")


def is_error(observation: str) -> bool:
    """True when the tool call failed (a malformed action, a failing tool, a sandbox error)."""
    if isinstance(observation, Observation):
        return observation.is_error
    return observation.startswith("Error:")


def exit_code(observation: str) -> int | None:
    """The exit code of the command the observation reports (None for other tools)."""
    if isinstance(observation, Observation):
        return observation.exit_code
    match = EXIT_LINE.search(observation)
    return int(match.group(1)) if match else None


def truncated(observation: str) -> bool:
    """True when the text is not the whole output (cut by the env or at the sandbox's cap)."""
    if isinstance(observation, Observation):
        return observation.truncated
    return bool(CUT_MARK.search(observation)) or "[output was truncated" in observation


def stdout_of(observation: str) -> str:
    """The stdout section of a command's observation ("" when it has none)."""
    _, found, rest = observation.partition("stdout:\n")
    if not found:
        return ""
    return rest.split("\nstderr:\n", 1)[0]
