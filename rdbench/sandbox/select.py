"""Which sandbox backend runs here: `auto` is docker where an engine answers, else bwrap."""

from __future__ import annotations

from typing import Any

import structlog

from rdbench.sandbox.base import Sandbox, SandboxConfig, SandboxUnavailable, sandbox_backend
from rdbench.sandbox.bwrap import BwrapSandbox, bwrap_problem
from rdbench.sandbox.docker import DockerSandbox, connect
from rdbench.sandbox.rootfs import METADATA, rootfs_dir

log = structlog.get_logger()

_last_pick: str | None = None


def backend_problem(name: str) -> str | None:
    """Why backend `name` cannot run here (and how to fix it), or None when it can."""
    if name == "docker":
        try:
            connect().close()
        except SandboxUnavailable as error:
            return str(error)
        return None
    if name == "bwrap":
        problem = bwrap_problem()
        exported = (rootfs_dir() / METADATA).is_file()
        if problem is None and not exported and backend_problem("docker") is not None:
            return (
                f"The bwrap backend has no root filesystem ({rootfs_dir()} is missing) and "
                "no Docker engine answers to export one. Start Docker once and run "
                "`rdbench image build`; after that bwrap works without Docker."
            )
        return problem
    if name == "auto":
        if not available_backends():
            reasons = "; ".join(f"{b}: {backend_problem(b)}" for b in ("docker", "bwrap"))
            return f"No sandbox backend works here. {reasons}"
        return None
    return f"Unknown sandbox backend {name!r}; known: auto, docker, bwrap"


def available_backends() -> list[str]:
    """The concrete backends that can start a sandbox here, docker first."""
    return [name for name in ("docker", "bwrap") if backend_problem(name) is None]


@sandbox_backend("auto")
def auto_sandbox(config: SandboxConfig, **options: Any) -> Sandbox:
    """A docker sandbox when a Docker engine answers, else a bwrap one (with `options` for the
    chosen backend)."""
    global _last_pick
    picked = "docker" if backend_problem("docker") is None else "bwrap"
    if picked != _last_pick:  # said once per process, and whenever the choice changes
        log.info("sandbox.auto", picked=picked)
        _last_pick = picked
    if picked == "docker":
        return DockerSandbox(config, **options)
    try:
        return BwrapSandbox(config, **options)
    except SandboxUnavailable as error:
        raise SandboxUnavailable(
            f"No Docker engine answers and the bwrap fallback cannot run: {error}"
        ) from error
