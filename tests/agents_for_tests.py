"""Small agents the tests load as `module:Class`, the way third-party agents plug in."""

from __future__ import annotations

from collections import deque
from typing import Any

from rdbench.agents import TaskInfo, Usage


class Scripted:
    """Writes answer.py to print 3, then runs `command` (default: true) until stopped."""

    name = "scripted"

    def __init__(self, command: str = "true", crash_after: int | None = None):
        self.command = command
        self.crash_after = crash_after
        self.acts = 0
        self.closed = False

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Nothing to prepare."""
        self.acts = 0

    def act(self, observation: str) -> dict[str, Any]:
        """Write the answer first, then the command over and over (or crash)."""
        self.acts += 1
        if self.crash_after is not None and self.acts > self.crash_after:
            raise RuntimeError("the agent's own bug")
        if self.acts == 1:
            return {"tool": "write_file", "input": {"path": "answer.py", "content": "print(3)"}}
        return {"tool": "bash", "input": {"command": self.command}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


class Actions:
    """Plays a fixed list of actions, then submits."""

    name = "actions"

    def __init__(self, actions: list[dict[str, Any]]):
        self.actions = deque(actions)

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Nothing to prepare."""

    def act(self, observation: str) -> dict[str, Any]:
        """The next action, or submit."""
        return self.actions.popleft() if self.actions else {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


class ClosesOnlyWhenStarted:
    """Submits at once; its close() fails unless reset() ran first (a close before the
    episode started is a protocol breach the runner must never commit)."""

    name = "closes-only-when-started"

    def __init__(self) -> None:
        self.started = False

    def reset(self, info: TaskInfo, observation: str) -> None:
        """The episode started."""
        self.started = True

    def act(self, observation: str) -> dict[str, Any]:
        """Submit the workspace as it is."""
        return {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()

    def close(self) -> None:
        """Fail when called before reset()."""
        if not self.started:
            raise RuntimeError("close() called on an agent that was never started")


class Relayer:
    """A relay's agent without a model: submits at once, records the notes it starts with
    (as the successor scaffold does) and leaves notes naming its seed."""

    name = "relayer"

    def __init__(self, scaffold: str | None = None):
        self.seed = -1

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Note the notes."""
        self.seed = info.seed
        if info.handoff:
            info.record("scaffold", {"action": "handoff_in", "text": info.handoff})

    def act(self, observation: str) -> dict[str, Any]:
        """Submit."""
        return {"tool": "submit", "input": {}}

    def end(self, reason: str) -> str:
        """Notes for the successor."""
        return f"notes of seed {self.seed}: {reason}"

    def usage(self) -> Usage:
        """No model."""
        return Usage()
