"""Sandboxes: the protocol (base.py), backends as plug-ins found through the `rdbench.sandboxes`
entry points (backend.py; rdbench ships docker and bwrap), and `auto`, the first usable backend
by priority (select.py).

A backend's module is imported when the backend is first used, so importing this package loads
no backend's dependencies (the Docker SDK among them).
"""

from __future__ import annotations

from typing import Any

from rdbench.sandbox.backend import (
    ENTRY_POINT_GROUP,
    SandboxBackend,
    backend_factory,
    backend_names,
    get_backend,
    make_sandbox,
    usable_backends,
)
from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_USER,
    GRADER_DIR,
    SANDBOXES,
    ExecResult,
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxFileNotFound,
    SandboxOutputLimit,
    SandboxTimeout,
    SandboxUnavailable,
)

_FROM_SELECT = ("available_backends", "backend_problem")


def __getattr__(name: str) -> Any:
    """`available_backends` and `backend_problem`, imported from select.py when first asked."""
    if name in _FROM_SELECT:
        from rdbench.sandbox import select

        return getattr(select, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AGENT_HOME",
    "AGENT_USER",
    "ENTRY_POINT_GROUP",
    "GRADER_DIR",
    "SANDBOXES",
    "ExecResult",
    "Sandbox",
    "SandboxBackend",
    "SandboxConfig",
    "SandboxError",
    "SandboxFileNotFound",
    "SandboxOutputLimit",
    "SandboxTimeout",
    "SandboxUnavailable",
    "available_backends",
    "backend_factory",
    "backend_names",
    "backend_problem",
    "get_backend",
    "make_sandbox",
    "usable_backends",
]
