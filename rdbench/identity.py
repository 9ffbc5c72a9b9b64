"""An episode's identity: a hash of everything that can change its outcome.

A run skips an episode only when a finished one with the same identity exists, so a re-run
with another agent option, command line, tool set, budget, backend, seed, task content or
sandbox image runs new episodes instead of reporting an earlier configuration's score.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rdbench.task import Budget, TaskSpec

IDENTITY_VERSION = 1  # part of every identity: bump it when what goes into one changes
_NOT_CONTENT = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_NOT_TASK = {"tests"}  # a task's own tests: in the repository, not in the wheel, not its outcome


def task_content_hash(root: Path) -> str:
    """sha256 (hex) over every file of the task folder `root`: sorted relative paths and
    their bytes (bytecode caches left out: they are made by reading the task, not part of
    it; so is its own tests/ folder, which the wheel leaves out). Symbolic links count as
    their target's text, never followed."""
    digest = hashlib.sha256(b"rdbench-task-v1\0")
    files = sorted(
        path for path in root.rglob("*")
        if (path.is_file() or path.is_symlink())
        and not _NOT_CONTENT.intersection(path.relative_to(root).parts)
        and path.relative_to(root).parts[0] not in _NOT_TASK
        and path.suffix != ".pyc"
    )
    for path in files:
        data = (
            f"symlink:{path.readlink()}".encode() if path.is_symlink() else path.read_bytes()
        )
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%d\0%s\0%d\0" % (len(name), name, len(data)))
        digest.update(data)
    return digest.hexdigest()


def resolve_backend(name: str) -> str:
    """The backend that would run for `name`: "auto" as the auto backend picks it (the first
    usable registered backend by priority), any other name as is once it is known to exist.
    SandboxUnavailable naming the known backends for an unknown name."""
    from rdbench.sandbox.backend import backend_factory, get_backend

    if name == "auto":
        return get_backend(name).name
    backend_factory(name)  # raises for an unknown backend; imports only this one
    return name


def sandbox_image() -> str:
    """What identifies the sandbox's root filesystem: the sandbox image's tag (a hash of the
    Dockerfile, image/ and the base). Docker runs that image; bwrap runs its exported files."""
    from rdbench.image import image_tag

    return image_tag()


def task_image(task: TaskSpec) -> dict[str, str]:
    """What identifies a task's own image, beyond the sandbox image: {"task_image": tag} for
    a task with a layer or a named image (see rdbench.task_image), {} for one that runs the
    sandbox image (so its identity is what it was before task images existed)."""
    if not task.own_image:
        return {}
    from rdbench.task_image import task_image_tag

    return {"task_image": task_image_tag(task)}


def resolved_tools(task: TaskSpec, tools: list[str] | None) -> list[str]:
    """The tool set an env of `task` gives the agent for the requested `tools` (the task's
    default for None), each entry in its canonical text with its tool variant
    (`bash(max_output=500)`, `score(off)`); ValueError for an unknown tool or variant."""
    from rdbench.env import RDEnv

    return list(RDEnv(task, tools=tools).tool_set)  # construction starts nothing


def resolved_budget(task: TaskSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The task's budget with `overrides` laid over it, as the env enforces it."""
    return Budget.model_validate({**task.budget.model_dump(), **overrides}).model_dump()


def episode_configuration(
    *,
    task: TaskSpec,
    agent: str,
    agent_options: dict[str, Any],
    scaffold: str | None,
    tools: list[str] | None,
    budget: dict[str, Any],
    sandbox: str,
    seed: int,
) -> dict[str, Any]:
    """Everything that can change an episode's outcome, resolved (defaults filled in, "auto"
    resolved), as a JSON-ready dict."""
    return {
        "identity_version": IDENTITY_VERSION,
        "task": {"id": task.id, "version": task.version, "hash": task_content_hash(task.root)},
        "image": sandbox_image(),
        **task_image(task),
        "agent": agent,
        "agent_options": agent_options,
        "scaffold": scaffold,
        "tools": resolved_tools(task, tools),
        "budget": resolved_budget(task, budget),
        "sandbox": resolve_backend(sandbox),
        "seed": seed,
    }


def canonical_json(data: Any) -> str:
    """`data` as one canonical JSON text (sorted keys, no spaces). A value JSON cannot hold
    is written as its repr: an object whose repr changes (an address) never matches again,
    so it can cost a re-run but never a wrong skip."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=repr)


def identity_hash(configuration: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of `configuration`."""
    return hashlib.sha256(canonical_json(configuration).encode()).hexdigest()
