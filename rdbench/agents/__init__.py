"""Agent adapters, found by short name in a registry (`--agent NAME`)."""

from rdbench.agents import scripted as _scripted  # noqa: F401  (registers oracle and null)
from rdbench.agents.base import AGENTS, Agent, TaskInfo, Usage, agent, make_agent

__all__ = ["AGENTS", "Agent", "TaskInfo", "Usage", "agent", "make_agent"]
