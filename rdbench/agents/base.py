"""The agent interface and the registry of agents by short name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rdbench.task import TaskSpec


@dataclass(frozen=True)
class TaskInfo:
    """What an agent is given at the start of an episode."""

    task: TaskSpec
    instructions: str
    tools: list[dict[str, Any]]
    budget: dict[str, Any]


@dataclass
class Usage:
    """Model usage of an agent so far: tokens and dollars."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Agent(Protocol):
    """Turns observations into actions (tool calls)."""

    name: str

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Start a new episode with the task's information and the first observation."""
        ...

    def act(self, observation: str) -> dict[str, Any]:
        """The next action, `{"tool": ..., "input": {...}}`, given the last observation."""
        ...

    def usage(self) -> Usage:
        """Tokens and dollars used so far in this episode."""
        ...


AgentFactory = Callable[..., Agent]
AGENTS: dict[str, AgentFactory] = {}


def agent(name: str) -> Callable[[AgentFactory], AgentFactory]:
    """Register an agent factory under `name` (used by --agent)."""

    def register(factory: AgentFactory) -> AgentFactory:
        AGENTS[name] = factory
        return factory

    return register


def make_agent(name: str, **options: Any) -> Agent:
    """An agent by its registered short name."""
    if name not in AGENTS:
        known = ", ".join(sorted(AGENTS)) or "none"
        raise ValueError(f"Unknown agent {name!r}; installed agents: {known}")
    return AGENTS[name](**options)
