"""Sandboxes: the protocol (base.py) and one module per backend, registered by name."""

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
    "make_sandbox",
    "sandbox_backend",
]
