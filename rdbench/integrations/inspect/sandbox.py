"""rdbench sandboxes as Inspect sandbox environments: `rdbench-docker` and `rdbench-bwrap`.

Any Inspect task can say `sandbox="rdbench-bwrap"`, or `("rdbench-docker", "sandbox.toml")`
with the fields of RdbenchSandboxConfig in a TOML or JSON file, or pass the model itself.
Each sample gets one sandbox (named "default"), started through `rdbench.sandbox.make_sandbox`
with the walls rdbench gives its agents (no network, limits on memory, processes and disk).

How Inspect's contract maps onto rdbench's sandbox:
- Commands run as the agent user ("agent") in its home, /home/agent, which is also the folder
  relative paths and a relative `cwd` are taken from. `user="root"` runs as root (without
  capabilities); any other user raises SandboxUserUnsupportedError: the image has those two.
- A command past its timeout is killed with everything it started and raises TimeoutError;
  with no timeout, RdbenchSandboxConfig.exec_timeout_s applies. `timeout_retry` is not needed
  (rdbench's timeouts are the command's own, never a transport's) and is ignored.
- Output past Inspect's limit (INSPECT_SANDBOX_MAX_EXEC_OUTPUT_SIZE) raises
  OutputLimitExceededError; output is decoded as UTF-8 with replacement characters.
- A program that cannot be executed (no execute permission) raises PermissionError; a sandbox
  that no longer answers raises SandboxUnavailableError.
- read_file and write_file act as the agent user would: its permissions decide
  (PermissionError), a folder is IsADirectoryError, a missing file FileNotFoundError, and
  write_file makes missing parent folders. read_file honours INSPECT_SANDBOX_MAX_READ_FILE_SIZE
  (OutputLimitExceededError).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import shlex
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, overload

import anyio
import structlog
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel, ConfigDict, Field

from rdbench.sandbox import (
    AGENT_HOME,
    AGENT_USER,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    make_sandbox,
)
from rdbench.sandbox import ExecResult as RdbenchExecResult
from rdbench.sandbox.base import AGENT_UID

log = structlog.get_logger()

T = TypeVar("T")

# The users an rdbench sandbox has, as Inspect may name them.
USERS = {AGENT_USER: AGENT_USER, str(AGENT_UID): AGENT_USER, "root": "root", "0": "root"}
LABEL_TASK = "rdbench.inspect.task"  # the label naming the Inspect task a sandbox ran for

# Run as the agent before a read: why the file cannot be read (exit 3: missing, 4: a folder,
# 5: not readable, or in a folder the agent may not enter), else its size.
READ_CHECK = """
folder=$(dirname -- "$1")
[ -e "$1" ] || { [ -d "$folder" ] && [ ! -x "$folder" ] && exit 5; exit 3; }
[ -d "$1" ] && exit 4
[ -r "$1" ] || exit 5
stat -L -c %s -- "$1"
"""
# Run as the agent (by bash, for pipefail): $3 blocks of the file $1 after the first $2, as
# base64.
READ_CHUNK = """
set -o pipefail
dd if="$1" bs=4096 skip="$2" count="$3" iflag=fullblock status=none | base64 -w 0
"""
READ_BLOCK = 4096  # bytes: the block size of READ_CHUNK's dd
# Run as the agent to write stdin to the file $1 (exit 4: it is a folder; 5: no permission;
# 6: anything else, with the reason on stderr).
WRITE_SCRIPT = """
[ -d "$1" ] && exit 4
folder=$(dirname -- "$1")
why=$(mkdir -p -- "$folder" 2>&1) || {
    case $why in *"Permission denied"*) exit 5;; esac; echo "$why" >&2; exit 6; }
if [ -e "$1" ]; then [ -w "$1" ] || exit 5; else [ -w "$folder" ] || exit 5; fi
cat > "$1" || exit 6
"""


class RdbenchSandboxConfig(BaseModel):
    """How the sandbox of each sample is made (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = None  # the image tag; None: the one `rdbench image build` made
    cpus: float = Field(default=2.0, gt=0)
    memory_mb: int = Field(default=4096, gt=0)
    pids: int = Field(default=512, gt=0)
    disk_mb: int = Field(default=4096, gt=0)
    exec_timeout_s: float = Field(default=3600.0, gt=0)  # for a command given no timeout


def load_config(config: SandboxEnvironmentConfigType | None) -> RdbenchSandboxConfig:
    """The config Inspect passed: None (the defaults), the model itself, or the path of a
    TOML or JSON file holding its fields. ValueError saying what is wrong otherwise."""
    if config is None:
        return RdbenchSandboxConfig()
    if isinstance(config, RdbenchSandboxConfig):
        return config
    if isinstance(config, str):
        path = Path(config)
        if not path.is_file():
            raise ValueError(
                f"rdbench sandbox config {config!r} is not a file; give the path of a TOML or "
                f"JSON file with the fields {', '.join(RdbenchSandboxConfig.model_fields)}"
            )
        text = path.read_text(encoding="utf-8")
        try:
            fields = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
            return RdbenchSandboxConfig(**fields)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a valid rdbench sandbox config: {error}") from error
    raise ValueError(
        f"rdbench sandboxes take an RdbenchSandboxConfig or a file path as config, got "
        f"{type(config).__name__}"
    )


class RdbenchSandboxEnvironment(SandboxEnvironment):
    """An Inspect sandbox environment backed by one rdbench sandbox (of `backend`)."""

    backend: ClassVar[str]

    def __init__(self, sandbox: Sandbox, config: RdbenchSandboxConfig, output_limit: int):
        """Wrap `sandbox`, made with `config`, whose exec keeps `output_limit` bytes of each
        output stream."""
        super().__init__()
        self.sandbox = sandbox
        self.config = config
        # read_file's chunk, in READ_BLOCKs: its base64 (4/3 larger) must fit in exec's output
        self.read_blocks = max(1, output_limit * 3 // 4 // READ_BLOCK - 1)

    @classmethod
    def default_concurrency(cls) -> int | None:
        """How many samples' sandboxes Inspect runs at once unless told: one per processor
        this process may use."""
        return len(os.sched_getaffinity(0))

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        """The config model from its serialized fields."""
        return RdbenchSandboxConfig(**config)

    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        """Start the sample's sandbox."""
        settings = load_config(config)
        sandbox_config = SandboxConfig(
            cpus=settings.cpus,
            memory_mb=settings.memory_mb,
            pids=settings.pids,
            disk_mb=settings.disk_mb,
            image=settings.image,
            exec_timeout_s=settings.exec_timeout_s,
            output_limit=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE + 1,
            labels={LABEL_TASK: task_name},
        )
        try:
            sandbox = await _in_thread(partial(make_sandbox, cls.backend, sandbox_config))
        except SandboxUnavailable as error:
            raise SandboxUnavailableError(str(error)) from error
        log.info("inspect.sandbox_start", backend=cls.backend, task=task_name)
        return {"default": cls(sandbox, settings, sandbox_config.output_limit)}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Stop and remove the sample's sandboxes."""
        for environment in environments.values():
            await _in_thread(environment.as_type(RdbenchSandboxEnvironment).sandbox.close)

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Run `cmd` in the sandbox (see the module's docstring for how errors map)."""
        as_user = _rdbench_user(user)
        data = input.encode("utf-8") if isinstance(input, str) else input
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        result = await self._run(
            cmd, input=data, cwd=None if cwd is None else self.path(cwd), env=env,
            user=as_user, timeout=None if timeout is None else float(timeout),
        )  # fmt: skip
        if result.timed_out:
            limit_s = self.config.exec_timeout_s if timeout is None else timeout
            error = TimeoutError(f"Command timed out after {limit_s} seconds")
            error.truncated_output = result.stdout + result.stderr  # type: ignore[attr-defined]
            raise error
        if result.truncated or max(_size(result.stdout), _size(result.stderr)) > limit:
            raise OutputLimitExceededError(
                SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR, result.stdout[:limit]
            )
        if _not_executable(result, cmd[0]):
            raise PermissionError(
                f"Permission denied executing {cmd[0]!r}: "
                f"{(result.stdout + result.stderr).strip()}"
            )
        return ExecResult(
            success=result.returncode == 0,
            returncode=result.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
        )

    async def write_file(self, file: str, contents: str | bytes) -> None:
        """Create or replace `file` (relative: in the agent's home) as the agent would, making
        missing parent folders."""
        path = self.path(file)
        data = contents.encode("utf-8") if isinstance(contents, str) else contents
        result = await self._run(["sh", "-c", WRITE_SCRIPT, "write_file", path], input=data)
        if result.timed_out:
            raise TimeoutError(f"Writing {file} took longer than {self.config.exec_timeout_s} s")
        if result.returncode == 4:
            raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file", file)
        if result.returncode == 5:
            raise PermissionError(errno.EACCES, "Permission denied (as the agent user)", file)
        if result.returncode != 0:
            raise OSError(f"Could not write {file} in the sandbox: {result.stderr.strip()}")

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        """The contents of `file` (relative: in the agent's home), read by the agent user (so
        with its permissions, never the host's); text is decoded as UTF-8, newlines kept."""
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        path = self.path(file)
        check = await self._run(["sh", "-c", READ_CHECK, "read_file", path])
        if check.timed_out:
            raise TimeoutError(f"Reading {file} took longer than {self.config.exec_timeout_s} s")
        if check.returncode == 3:
            raise FileNotFoundError(errno.ENOENT, "No such file in the sandbox", file)
        if check.returncode == 4:
            raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file", file)
        if check.returncode == 5:
            raise PermissionError(errno.EACCES, "Permission denied (as the agent user)", file)
        if check.returncode != 0 or not check.stdout.strip().isdigit():
            raise OSError(f"Could not read {file} in the sandbox: {check.stderr.strip()}")
        if int(check.stdout) > limit:
            raise OutputLimitExceededError(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None)
        data = bytearray()
        while True:  # in chunks whose base64 fits under exec's output cap
            skip = len(data) // READ_BLOCK
            chunk = await self._run(["bash", "-c", READ_CHUNK, "read_file", path, str(skip),
                                     str(self.read_blocks)])  # fmt: skip
            if chunk.timed_out:
                raise TimeoutError(
                    f"Reading {file} took longer than {self.config.exec_timeout_s} s"
                )
            if chunk.returncode != 0 or chunk.truncated:
                raise OSError(f"Could not read {file} in the sandbox: {chunk.stderr.strip()}")
            piece = base64.b64decode(chunk.stdout)
            data += piece
            if len(data) > limit:  # grew since the check
                raise OutputLimitExceededError(
                    SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR, None
                )
            if len(piece) < READ_BLOCK * self.read_blocks:
                break
        return data.decode("utf-8") if text else bytes(data)

    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """How to open a shell in the sandbox (Docker only: a bwrap sandbox has no handle a
        second process can join)."""
        sandbox_id = str(getattr(self.sandbox, "id", ""))
        if self.backend != "docker" or not sandbox_id:
            raise NotImplementedError(f"rdbench-{self.backend} sandboxes offer no connection")
        as_user = _rdbench_user(user)
        command = f"docker exec -it --user {as_user} --workdir {AGENT_HOME} {sandbox_id} bash"
        return SandboxConnection(type=f"rdbench-{self.backend}", command=command,
                                 container=sandbox_id)  # fmt: skip

    def path(self, file: str) -> str:
        """`file` inside the sandbox made absolute: relative paths are in the agent's home."""
        return posixpath.join(AGENT_HOME, file)

    async def _run(
        self, cmd: list[str], *, input: bytes | None = None, cwd: str | None = None,
        env: dict[str, str] | None = None, user: str = AGENT_USER, timeout: float | None = None,
    ) -> RdbenchExecResult:  # fmt: skip
        """rdbench's exec in a worker thread; SandboxUnavailableError when the sandbox no
        longer answers."""
        run = partial(self.sandbox.exec, cmd, input=input, cwd=cwd, env=env, user=user,
                      timeout=timeout)  # fmt: skip
        try:
            return await _in_thread(run)
        except SandboxUnavailable as error:
            raise SandboxUnavailableError(
                f"The rdbench-{self.backend} sandbox could not run {shlex.join(cmd[:3])}: "
                f"{error}"
            ) from error


@sandboxenv(name="rdbench-docker")
class RdbenchDockerSandbox(RdbenchSandboxEnvironment):
    """rdbench's Docker sandbox: a container with no network, capabilities or writable system
    folders."""

    backend = "docker"


@sandboxenv(name="rdbench-bwrap")
class RdbenchBwrapSandbox(RdbenchSandboxEnvironment):
    """rdbench's bubblewrap sandbox: the same walls without a daemon."""

    backend = "bwrap"


async def _in_thread(call: Callable[[], T]) -> T:
    """Run a blocking rdbench call in a worker thread, off Inspect's event loop."""
    return await anyio.to_thread.run_sync(call)


def _rdbench_user(user: str | None) -> str:
    """The rdbench user Inspect's `user` stands for; SandboxUserUnsupportedError for one the
    sandbox does not have."""
    if user is None:
        return AGENT_USER
    if user not in USERS:
        raise SandboxUserUnsupportedError(
            f"rdbench sandboxes run commands as {AGENT_USER!r} (the default) or 'root', not "
            f"{user!r}"
        )
    return USERS[user]


def _size(text: str) -> int:
    """The UTF-8 size of `text` in bytes."""
    return len(text.encode("utf-8", "replace"))


def _not_executable(result: RdbenchExecResult, program: str) -> bool:
    """True when the command never ran because `program` may not be executed: the runtime's
    or the shell's one-line report (exit 126, "permission denied", naming the program)."""
    output = (result.stdout + result.stderr).strip()
    return (
        result.returncode == 126
        and len(output.splitlines()) == 1
        and "permission denied" in output.lower()
        and program in output
    )


__all__ = [
    "RdbenchBwrapSandbox",
    "RdbenchDockerSandbox",
    "RdbenchSandboxConfig",
    "RdbenchSandboxEnvironment",
    "load_config",
]
