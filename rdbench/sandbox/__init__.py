"""Sandboxes: the protocol (base.py) and one module per backend, registered by name:
docker, bwrap, and auto (select.py: docker where an engine answers, else bwrap)."""

from rdbench.sandbox import bwrap as _bwrap  # noqa: F401  (registers the backend)
from rdbench.sandbox import docker as _docker  # noqa: F401  (registers the backend)
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
    make_sandbox,
    sandbox_backend,
)
from rdbench.sandbox.select import available_backends, backend_problem  # registers "auto"

__all__ = [
    "AGENT_HOME",
    "AGENT_USER",
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
    "backend_problem",
    "make_sandbox",
    "sandbox_backend",
]
