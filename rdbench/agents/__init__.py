"""Agent adapters, found by name: built-ins, the `rdbench.agents` entry points, `module:Class`.

Importing this package registers the built-ins; none of them imports its SDK until it is made.
"""

from rdbench.agents import claude as _claude  # noqa: F401  (each module registers its agents)
from rdbench.agents import command as _command  # noqa: F401
from rdbench.agents import human as _human  # noqa: F401
from rdbench.agents import openai_compat as _openai_compat  # noqa: F401
from rdbench.agents import scripted as _scripted  # noqa: F401
from rdbench.agents.base import (
    AGENTS,
    Agent,
    AgentConfigError,
    AgentError,
    TaskInfo,
    Usage,
    agent,
)
from rdbench.agents.loading import ENTRY_POINT_GROUP, agent_factory, installed_agents, make_agent

__all__ = [
    "AGENTS",
    "ENTRY_POINT_GROUP",
    "Agent",
    "AgentConfigError",
    "AgentError",
    "TaskInfo",
    "Usage",
    "agent",
    "agent_factory",
    "installed_agents",
    "make_agent",
]
