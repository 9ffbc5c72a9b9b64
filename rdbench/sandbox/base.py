"""The Sandbox protocol every backend implements, its value types, errors and registry."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

AGENT_USER = "agent"
# The agent user's uid and gid, in the image and on the host (files the agent writes on a
# bwrap sandbox's disk, processes in the host's process list). Chosen to be nobody's on the
# host: above the range distributions give to people (UID_MAX 60000) and below subordinate
# ids (from 100000), in a block systemd leaves unused (60578-61183).
AGENT_UID = 61000
AGENT_HOME = "/home/agent"
GRADER_DIR = "/grader"
# Where a person's sandbox shows its channel to the runner (SandboxConfig.channel_dir),
# read-only; no other sandbox has this path.
CHANNEL_DIR = "/run/rdbench"
DEFAULT_OUTPUT_LIMIT = 1_000_000  # bytes kept of each of stdout and stderr
# The environment every command starts with (before the user's HOME and USER and its own env).
BASE_ENV = {
    "PATH": "/opt/rdbench-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
}
# No file written inside a sandbox may grow past this (RLIMIT_FSIZE): a disk filler is stopped.
FILE_SIZE_LIMIT = 2 * 1024**3
# Capabilities the grader (root) needs to run the agent's code as the agent user.
GRADING_CAPS = ["SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "CHOWN", "KILL"]


class SandboxError(RuntimeError):
    """Something went wrong in or with a sandbox."""


class SandboxUnavailable(SandboxError):
    """The backend cannot run here (no engine, no image, the sandbox died)."""


class SandboxInputError(SandboxError, ValueError):
    """An argument that cannot be passed into a sandbox (a NUL byte in a command, a path or
    an environment variable)."""


class SandboxTimeout(SandboxError):
    """A command ran past its timeout and was killed."""


class SandboxFileNotFound(SandboxError, FileNotFoundError):
    """A path asked for does not exist inside the sandbox."""


class SandboxOutputLimit(SandboxError):
    """Output or a file was larger than the cap it was read with."""


class ArchiveError(SandboxError):
    """A folder could not be archived or unpacked because of what it holds (too large,
    unreadable, not a sound tar): the workspace's fault, never the machinery's."""


class ArchiveTooLarge(ArchiveError):
    """A workspace is larger than its task allows ([sandbox] workspace_mb)."""


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the archive's size in bytes and what tar left out (a note)."""

    size: int
    skipped: str = ""


@dataclass(frozen=True)
class ExecResult:
    """What one command did inside a sandbox."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False  # output was cut at the sandbox's cap

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    def check(self, what: str = "command") -> ExecResult:
        """Return self, or raise a typed error saying why `what` failed."""
        if self.timed_out:
            raise SandboxTimeout(f"{what} timed out and was killed")
        if self.returncode != 0:
            raise SandboxError(
                f"{what} exited with {self.returncode}: {(self.stderr or self.stdout)[-500:]}"
            )
        return self


@dataclass(frozen=True)
class SandboxConfig:
    """What a sandbox is made with: image, limits and the labels that identify it."""

    cpus: float = 2.0
    memory_mb: int = 4096
    pids: int = 512
    exec_timeout_s: float = 600.0
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    image: str | None = None  # backend default when None
    labels: dict[str, str] = field(default_factory=dict)
    grading: bool = False  # a grading sandbox: root may switch to the agent user
    disk_mb: int = 4096  # size of the disk holding every writable place (home, /tmp, ...)
    # A host folder shown read-only at CHANNEL_DIR: a person's channel to the runner
    # (rdbench/human_channel.py); None (every other sandbox): the path does not exist.
    channel_dir: str | None = None


@runtime_checkable
class Sandbox(Protocol):
    """An isolated machine an agent or a grader runs commands in.

    `user` is the one word for the identity a command runs as or a file belongs to: "agent"
    (the default) or "root". A sandbox is a context manager: `with make_sandbox(...) as
    sandbox:` closes it on leaving.

    Optional capability: `open_terminal(cmd, *, user, cwd, env, size, timeout) -> Terminal`,
    `cmd` run with an interactive terminal, for a person (see rdbench/sandbox/terminal.py;
    docker and bwrap have it)."""

    @property
    def id(self) -> str:
        """What names this sandbox on the host (a container id, a folder's suffix)."""
        ...

    @property
    def backend(self) -> str:
        """The name of the backend that runs it (as registered: "docker", "bwrap", ...)."""
        ...

    def exec(
        self,
        cmd: list[str],
        *,
        input: bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run `cmd` (as `user`, default the agent) and return what it did."""
        ...

    def write_file(self, path: str, data: bytes | str, *, user: str = AGENT_USER) -> None:
        """Create or replace the file at `path` (made with its parent folders), owned by
        `user`. This is the host's privileged channel: agents' writes go through exec."""
        ...

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of the file at `path`; SandboxFileNotFound if missing or not a file,
        SandboxOutputLimit when larger than `max_bytes`."""
        ...

    def put_dir(self, local_dir: str, path: str, *, user: str = AGENT_USER) -> None:
        """Copy the contents of the host folder `local_dir` into `path` inside, owned by
        `user`."""
        ...

    def get_dir(self, path: str) -> bytes:
        """A gzip-compressed tar of the folder `path` inside (members relative to it), for
        small folders: it is held in memory (export_dir streams)."""
        ...

    def export_dir(
        self, path: str, dest: BinaryIO, *, max_bytes: int | None = None, user: str = AGENT_USER
    ) -> Exported:
        """Stream a gzip tar of the contents of the folder `path` inside, made there by GNU
        tar run as `user`, into `dest` (never all in memory). Returns what
        it wrote; ArchiveTooLarge when the folder's used disk space or the archive
        passes `max_bytes` (nothing more is written then), ArchiveError when the folder
        cannot be archived, SandboxFileNotFound when it does not exist."""
        ...

    def import_archive(self, source: Path, path: str, *, user: str = AGENT_USER) -> None:
        """Unpack the host's gzip tar `source` into the folder `path` inside, streamed in and
        unpacked there by GNU tar run as `user` (the host never unpacks it). ArchiveError
        when it cannot be unpacked."""
        ...

    def close(self) -> None:
        """Stop and remove the sandbox; safe to call more than once."""
        ...

    def __enter__(self) -> Sandbox:
        """The sandbox itself."""
        ...

    def __exit__(self, *exc_info: object) -> None:
        """Close the sandbox."""
        ...


def require_command(
    cmd: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> None:
    """Refuse an empty command list, and a NUL byte anywhere in the command, its working
    folder or its environment (SandboxInputError); every backend's exec starts with this."""
    if not cmd:
        raise ValueError("Expected a non-empty command list, got []")
    texts = [*cmd, cwd or "", *(env or {}).keys(), *(env or {}).values()]
    if any("\0" in text for text in texts):
        raise SandboxInputError(
            "A command, its working folder or its environment holds a NUL byte (\\0), which "
            "no program can receive; remove it"
        )


def out_of_memory_note(memory_mb: int) -> str:
    """What every backend appends to the stderr of a command killed for want of memory."""
    return f"\n[rdbench: killed: out of memory (limit {memory_mb} MB)]\n"


def disk_full_note(disk_mb: int) -> str:
    """What every backend appends to the stderr of a command after which the sandbox's disk
    is full."""
    return f"\n[rdbench: the sandbox's disk is full (limit {disk_mb} MB)]\n"


def owner_of(user: str) -> str:
    """The file owner a command's `user` stands for: "root" for root (or uid 0), else the
    agent."""
    return "root" if user in ("root", "0") else AGENT_USER


def user_env(user: str) -> dict[str, str]:
    """HOME and USER for a command run as `user`."""
    home = "/root" if owner_of(user) == "root" else AGENT_HOME
    return {"HOME": home, "USER": owner_of(user)}


def sandbox_path(path: str) -> str:
    """`path` inside the sandbox made absolute (relative paths are in the agent's home) and
    normalized."""
    if "\0" in path:
        raise SandboxInputError(f"The path {path!r} holds a NUL byte (\\0); remove it")
    if not path.startswith("/"):
        path = posixpath.join(AGENT_HOME, path)
    return posixpath.normpath(path)


SandboxFactory = Callable[..., Sandbox]
# Backends registered in this process only, by name (a test's stand-in, say): make_sandbox
# tries these first. Installed backends are found through entry points (backend.py).
SANDBOXES: dict[str, SandboxFactory] = {}


class TrackedSandbox:
    """A sandbox that tells its owner when it is closed (the rest is the sandbox's own): how
    an env or a run keeps the set of sandboxes it must close when it is stopped."""

    def __init__(self, sandbox: Sandbox, on_close: Callable[[Sandbox], None]):
        self._sandbox = sandbox
        self._on_close = on_close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox, name)

    def close(self) -> None:
        """Close the sandbox (idempotent) and tell the owner."""
        try:
            self._sandbox.close()
        finally:
            self._on_close(self)  # type: ignore[arg-type]

    def __enter__(self) -> TrackedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
