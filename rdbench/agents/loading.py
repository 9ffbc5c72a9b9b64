"""Finding agents: built-ins by short name, third parties by entry point or `module:Class`.

Three ways to name an agent, tried in this order:

1. a built-in short name (`claude`, `openai`, `command`, `human`, `oracle`, `null`);
2. the name of an entry point in the group `rdbench.agents`, which a third-party package
   declares in its pyproject.toml: `[project.entry-points."rdbench.agents"] mine = "pkg:Agent"`;
3. `module:Class` (or `module:function`), imported from the Python path.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import structlog

from rdbench.agents.base import AGENTS, Agent, AgentConfigError, AgentFactory

log = structlog.get_logger()

ENTRY_POINT_GROUP = "rdbench.agents"


@dataclass(frozen=True)
class AgentEntry:
    """One installed agent as `rdbench agents` lists it."""

    name: str
    source: str  # "built-in" or the distribution that declares the entry point
    summary: str


def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def _summary(factory: Any) -> str:
    doc = (inspect.getdoc(factory) or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def installed_agents() -> list[AgentEntry]:
    """Every agent that can be named by a short name: built-ins, then entry points."""
    found = [AgentEntry(name, "built-in", _summary(factory)) for name, factory in AGENTS.items()]
    for name, point in sorted(_entry_points().items()):
        if name in AGENTS:
            continue
        source = point.dist.name if point.dist is not None else "entry point"
        try:
            summary = _summary(point.load())
        except Exception as error:  # a broken plug-in must not hide the others
            summary = f"(cannot be loaded: {error})"
        found.append(AgentEntry(name, source, summary))
    return found


def _import_target(spec: str) -> AgentFactory:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AgentConfigError(f"Expected an agent as module:Class, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AgentConfigError(
            f"Cannot import module {module_name!r} for agent {spec!r} ({error}); install its "
            "package or add its folder to PYTHONPATH"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise AgentConfigError(f"Module {module_name!r} has no {attribute!r} (agent {spec!r})")
        target = getattr(target, part)
    if not callable(target):
        raise AgentConfigError(f"{spec!r} is not a class or function that makes an agent")
    return target  # type: ignore[no-any-return]


def agent_factory(name: str) -> AgentFactory:
    """The factory for `name`: a built-in, an entry point, or `module:Class`."""
    if name in AGENTS:
        return AGENTS[name]
    points = _entry_points()
    if name in points:
        try:
            return points[name].load()  # type: ignore[no-any-return]
        except Exception as error:
            raise AgentConfigError(
                f"The agent entry point {name!r} ({points[name].value}) cannot be loaded: "
                f"{error}"
            ) from error
    if ":" in name:
        return _import_target(name)
    known = ", ".join(entry.name for entry in installed_agents())
    raise AgentConfigError(
        f"Unknown agent {name!r}; installed agents: {known}. Name a third-party agent as "
        "module:Class, or install a package declaring it in the 'rdbench.agents' entry points"
    )


def make_agent(name: str, **options: Any) -> Agent:
    """An agent by name (see the module docstring), made with `options`.

    Options the agent's factory does not take are an AgentConfigError naming the ones it does.
    """
    factory = agent_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: let the call say what is wrong
        signature = None
    if signature is not None:
        try:
            signature.bind(**options)
        except TypeError as error:
            takes = [
                p.name for p in signature.parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            raise AgentConfigError(
                f"Agent {name!r} cannot take options {sorted(options)} ({error}); "
                f"it takes: {', '.join(takes) or 'no options'}"
            ) from error
    made = factory(**options)
    log.debug("agent.made", agent=name, options=sorted(options))
    return made
