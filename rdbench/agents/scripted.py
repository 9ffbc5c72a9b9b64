"""Scripted agents that set a task's scale: oracle (the reference solution) and null."""

from __future__ import annotations

import base64
from collections import deque
from typing import Any

from rdbench.agents.base import TaskInfo, Usage, agent


@agent("null")
class NullAgent:
    """Changes nothing and submits at once: scores the starting solution (0)."""

    name = "null"

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Nothing to prepare."""

    def act(self, observation: str) -> dict[str, Any]:
        """Always submit."""
        return {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model, no usage."""
        return Usage()


@agent("oracle")
class OracleAgent:
    """Lays the task's reference solution over the workspace through the env's own tools,
    then submits: scores the reference (1)."""

    name = "oracle"

    def __init__(self) -> None:
        self._plan: deque[dict[str, Any]] = deque()

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Plan one write per file of the task's solution/ folder, then submit."""
        self._plan.clear()
        solution = info.task.solution_dir
        for path in sorted(p for p in solution.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            self._plan.append(_write_action(str(path.relative_to(solution)), path.read_bytes()))
        self._plan.append({"tool": "submit", "input": {}})

    def act(self, observation: str) -> dict[str, Any]:
        """The next write, then submit."""
        return self._plan.popleft() if self._plan else {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model, no usage."""
        return Usage()


def _write_action(relative_path: str, data: bytes) -> dict[str, Any]:
    try:
        return {"tool": "write_file", "input": {"path": relative_path, "content": data.decode()}}
    except UnicodeDecodeError:
        encoded = base64.b64encode(data).decode()
        code = (
            "import base64, pathlib\n"
            f"p = pathlib.Path({relative_path!r}); p.parent.mkdir(parents=True, exist_ok=True)\n"
            f"p.write_bytes(base64.b64decode({encoded!r}))\n"
        )
        return {"tool": "python", "input": {"code": code}}
