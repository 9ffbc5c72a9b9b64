"""Which sandbox backend runs here: `auto` is the first usable registered backend by priority
(docker where an engine answers, else bwrap, unless a plug-in is preferred)."""

from __future__ import annotations

import structlog

from rdbench.sandbox.backend import (
    AUTO,
    SandboxBackend,
    backend_names,
    get_backend,
    known_names,
    usable_backends,
)
from rdbench.sandbox.base import SandboxUnavailable

log = structlog.get_logger()

_last_pick: str | None = None


def backend_problem(name: str) -> str | None:
    """Why backend `name` ("auto" too) cannot run here (and how to fix it), or None when it
    can."""
    if name == AUTO:
        try:
            pick()
        except SandboxUnavailable as error:
            return str(error)
        return None
    try:
        return get_backend(name).problem()
    except SandboxUnavailable as error:
        return str(error)


def available_backends() -> list[str]:
    """The registered backends that can start a sandbox here, by priority."""
    return usable_backends()


def pick() -> SandboxBackend:
    """The backend `auto` runs: the first registered one, by priority, with no problem here.
    SandboxUnavailable with every backend's problem when none can run."""
    global _last_pick
    problems = []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except SandboxUnavailable as error:
            problems.append(f"{name}: {error}")
            continue
        problem = backend.problem()
        if problem is None:
            if name != _last_pick:  # said once per process, and whenever the choice changes
                log.info("sandbox.auto", picked=name)
                _last_pick = name
            return backend
        problems.append(f"{name}: {problem}")
    if not problems:
        raise SandboxUnavailable(f"No sandbox backend is registered; known: {known_names()}")
    raise SandboxUnavailable(f"No sandbox backend works here. {'; '.join(problems)}")
