"""Sandboxes: the protocol (base.py) and one module per backend, registered by name:
docker, bwrap, and auto (select.py: docker where an engine answers, else bwrap).

Backend modules are imported when a backend is first used (base.BACKEND_MODULES), so importing
this package loads no backend's dependencies (the Docker SDK among them).
"""

from __future__ import annotations

from typing import Any

from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_USER,
    BACKEND_MODULES,
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
    backend_factory,
    backend_names,
    make_sandbox,
    sandbox_backend,
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
    "BACKEND_MODULES",
    "GRADER_DIR",
    "SANDBOXES",
    "ExecResult",
    "Sandbox",
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
    "make_sandbox",
    "sandbox_backend",
]
