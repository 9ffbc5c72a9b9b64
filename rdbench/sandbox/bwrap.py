"""The bubblewrap backend: namespaces, a read-only copy of the sandbox image, no daemon.

Each command is one `bwrap` run over the same folders, made per sandbox under
/var/tmp/rdbench-bwrap-<id>/ (mode 700): `home` is bound read-write at /home/agent, `tmp` and
`var-tmp` at /tmp and /var/tmp, and the root-only `grader` at /grader (empty in an agent's
sandbox). Everything else is the image's filesystem (see rootfs.py), read-only. Each run has
its own pid, network (only `lo`), ipc, uts and cgroup namespaces, a fresh /proc, /dev and
/dev/shm, a cleared environment, and dies with its parent. Background processes therefore do not
outlive their command on this backend: when the command exits, its pid namespace goes with it.

Users: bwrap runs as real root without a user namespace (one would map the agent to host
root). The agent's commands drop to uid/gid 1000 through `setpriv` with no capabilities at all
and no_new_privs; root's commands keep no capabilities, except in a grading sandbox, where root
keeps those needed to run the agent's code as the agent (GRADING_CAPS). This backend needs root.

Limits: a cgroup per sandbox (memory, processes, CPU; see cgroups.py) with a leaf per command,
and per command RLIMIT_CPU (timeout x cpus + a margin) and RLIMIT_FSIZE (see process.py). A
command past its timeout is killed with everything it started, and a bwrap run dies with the
rdbench thread waiting for it. Unlike docker there is no seccomp filter.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from pathlib import Path

import structlog

from rdbench.sandbox.archive import folder_tar, single_file_tar, strip_top_folder
from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_USER,
    BASE_ENV,
    GRADER_DIR,
    GRADING_CAPS,
    ExecResult,
    SandboxConfig,
    SandboxError,
    SandboxFileNotFound,
    SandboxOutputLimit,
    SandboxUnavailable,
    owner_of,
    sandbox_backend,
    sandbox_path,
    user_env,
)
from rdbench.sandbox.cgroups import SandboxCgroups, remove_leftover_groups
from rdbench.sandbox.process import ProcessRunner, Run
from rdbench.sandbox.rootfs import METADATA, ensure_rootfs, image_env

log = structlog.get_logger()

STATE_DIR = Path("/var/tmp")
PREFIX = "rdbench-bwrap-"
AGENT_UID = 1000
FILE_OP_TIMEOUT_S = 600.0
NAMESPACES = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try"]  # fmt: skip  (--unshare-all would add a user namespace)
# The agent's commands: root keeps these just long enough for setpriv to drop to uid 1000.
TO_AGENT = ["/usr/bin/setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_UID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]  # fmt: skip
TO_AGENT_CAPS = ["SETUID", "SETGID", "SETPCAP"]
# The host's own file operations (tar, cat as root) read and write whatever the agent left.
FILE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"]
READ_ONLY_HINT = (
    "the bwrap sandbox is read-only outside /home/agent, /tmp, /var/tmp and /grader"
)

READ_SCRIPT = """
[ -e "$1" ] || exit 3
[ -f "$1" ] || exit 4
size=$(stat -L -c %s -- "$1")
if [ -n "$2" ] && [ "$size" -gt "$2" ]; then echo "$size" >&2; exit 5; fi
exec cat -- "$1"
"""
UNTAR_SCRIPT = """
[ -d "$1" ] || exit 3
[ -w "$1" ] || exit 6
exec tar -C "$1" -x -f -
"""
TAR_SCRIPT = """
[ -d "$1" ] || exit 3
exec tar -C "$(dirname -- "$1")" -c -f - -- "$(basename -- "$1")"
"""


def bwrap_problem() -> str | None:
    """Why the bwrap backend cannot run here (and how to fix it), or None when it can."""
    if shutil.which("bwrap") is None:
        return (
            "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`, "
            "or run with --sandbox docker"
        )
    if os.geteuid() != 0:
        return (
            "The bwrap backend needs root: it runs commands as root or as the agent user "
            "(uid 1000) without a user namespace. Run rdbench as root, or use --sandbox docker"
        )
    return None


@sandbox_backend("bwrap")
class BwrapSandbox:
    """A sandbox made of bubblewrap runs over per-sandbox folders; ready on construction."""

    backend = "bwrap"  # the registered name, recorded with results

    def __init__(
        self,
        config: SandboxConfig,
        *,
        rootfs: str | Path | None = None,
        state_dir: str | Path | None = None,
    ):
        problem = bwrap_problem()
        if problem is not None:
            raise SandboxUnavailable(problem)
        self.config = config
        self.rootfs = Path(rootfs) if rootfs is not None else ensure_rootfs(config.image)
        self._env = image_env(self.rootfs) if (self.rootfs.parent / METADATA).is_file() else {}
        self._bwrap = shutil.which("bwrap") or "bwrap"
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.dir = Path(state_dir or STATE_DIR) / f"{PREFIX}{self.id}"
        self._closed = False
        self._runner = ProcessRunner()
        self.cgroups: SandboxCgroups | None = None
        try:
            self._make_folders()
            self.cgroups = SandboxCgroups.create(
                self.id, memory_mb=config.memory_mb, pids=config.pids, cpus=config.cpus
            )
        except BaseException:
            self.close()
            raise
        log.info("sandbox.start", backend="bwrap", sandbox=self.id, rootfs=str(self.rootfs),
                 cgroups=self.cgroups is not None)  # fmt: skip

    def _make_folders(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True)
        home = self.dir / "home"
        skeleton = self.rootfs / AGENT_HOME.lstrip("/")
        if skeleton.is_dir():  # the image's /home/agent (.bashrc, .profile)
            shutil.copytree(skeleton, home, symlinks=True)
        else:
            home.mkdir()
        for path in [home, *home.rglob("*")]:
            os.lchown(path, AGENT_UID, AGENT_UID)
        for name in ("tmp", "var-tmp"):
            (self.dir / name).mkdir()
            (self.dir / name).chmod(0o1777)
        (self.dir / "grader").mkdir(mode=0o700)

    def _mounts(self) -> list[str]:
        shm_bytes = str(self.config.memory_mb * 1024 * 1024)
        return [
            "--ro-bind", str(self.rootfs), "/",
            "--bind", str(self.dir / "home"), AGENT_HOME,
            "--bind", str(self.dir / "tmp"), "/tmp",
            "--bind", str(self.dir / "var-tmp"), "/var/tmp",
            "--bind", str(self.dir / "grader"), GRADER_DIR,
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--size", shm_bytes, "--tmpfs", "/dev/shm",
        ]  # fmt: skip

    def _argv(
        self, cmd: list[str], *, owner: str, cwd: str, env: dict[str, str], caps: list[str]
    ) -> list[str]:
        argv = [self._bwrap, *self._mounts(), *NAMESPACES, "--die-with-parent", "--new-session",
                "--hostname", "sandbox", "--clearenv", "--chdir", cwd,
                "--cap-drop", "ALL"]  # fmt: skip
        drop: list[str] = []
        if owner == AGENT_USER:
            caps, drop = TO_AGENT_CAPS, TO_AGENT
        for cap in caps:
            argv += ["--cap-add", f"CAP_{cap}"]
        # The environment is set by `env` once the identity is final, so nothing in it (say
        # LD_PRELOAD) reaches setpriv while it still holds capabilities. A missing command
        # exits 127, as in a shell.
        assignments = [f"{key}={value}" for key, value in env.items()]
        return [*argv, "--", *drop, "/usr/bin/env", "-i", *assignments, *cmd]

    def _command_env(self, user: str, env: dict[str, str] | None) -> dict[str, str]:
        return {**self._env, **BASE_ENV, "HOSTNAME": "sandbox", **user_env(user), **(env or {})}

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
        """Run `cmd` inside; on timeout kill it and everything it started."""
        if not cmd:
            raise ValueError("Expected a non-empty command list, got []")
        user = user or AGENT_USER
        owner = _checked_owner(user)
        caps = GRADING_CAPS if owner == "root" and self.config.grading else []
        argv = self._argv(cmd, owner=owner, cwd=cwd or AGENT_HOME,
                          env=self._command_env(user, env), caps=caps)  # fmt: skip
        limit = timeout if timeout is not None else self.config.exec_timeout_s
        run, oom_kills = self._run(argv, input=input, timeout=limit,
                                   output_limit=self.config.output_limit)  # fmt: skip
        stderr = run.stderr.decode("utf-8", "replace")
        if oom_kills:
            stderr += (f"\n[rdbench: killed: out of memory (limit {self.config.memory_mb} MB)]"
                       "\n")  # fmt: skip
        if run.timed_out:
            log.warning("sandbox.exec_timeout", cmd=cmd[:3], timeout=limit)
        return ExecResult(
            returncode=run.returncode,
            stdout=run.stdout.decode("utf-8", "replace"),
            stderr=stderr,
            timed_out=run.timed_out,
            truncated=run.truncated,
        )

    def _run(
        self, argv: list[str], *, input: bytes | None, timeout: float, output_limit: int | None
    ) -> tuple[Run, int]:
        """One bwrap run in a fresh cgroup leaf; what it did and its out-of-memory kills."""
        if self._closed:
            raise SandboxUnavailable(f"The bwrap sandbox {self.id} is closed")
        leaf = self.cgroups.exec_group() if self.cgroups is not None else None
        try:
            run = self._runner.run(argv, input=input, timeout=timeout, output_limit=output_limit,
                                   cpus=self.config.cpus, leaf=leaf)  # fmt: skip
        except OSError as error:
            raise SandboxUnavailable(f"Could not run bwrap ({self._bwrap}): {error}") from error
        finally:
            oom_kills = leaf.oom_kills() if leaf is not None else 0
            if leaf is not None and self.cgroups is not None:
                self.cgroups.release(leaf)
        return run, oom_kills

    def _as_root(
        self, what: str, script: str, *args: str, input: bytes | None = None,
        output_limit: int | None = None,
    ) -> Run:  # fmt: skip
        """Run one of the backend's own shell scripts as root, able to read and write every
        file (the host's privileged channel, like docker's archive API)."""
        argv = self._argv(["/bin/sh", "-c", script, "sh", *args], owner="root", cwd="/",
                          env=self._command_env("root", None), caps=FILE_CAPS)  # fmt: skip
        run, _ = self._run(argv, input=input, timeout=FILE_OP_TIMEOUT_S, output_limit=output_limit)
        if run.timed_out:
            raise SandboxError(f"{what} took longer than {FILE_OP_TIMEOUT_S:.0f} s and was killed")
        return run

    def _fail(self, what: str, run: Run) -> SandboxError:
        if run.returncode == 6:
            return SandboxError(f"{what} failed: {READ_ONLY_HINT}")
        message = run.stderr.decode("utf-8", "replace").strip()[-500:]
        hint = f" ({READ_ONLY_HINT})" if "Read-only file system" in message else ""
        return SandboxError(f"{what} failed (exit {run.returncode}): {message}{hint}")

    def write_file(self, path: str, data: bytes | str, *, owner: str = AGENT_USER) -> None:
        """Create or replace `path` (parent folders are made as needed), owned by `owner`."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        folder, name = posixpath.split(sandbox_path(path))
        archive = single_file_tar(name, payload, owner=owner)
        run = self._as_root(f"Writing {path}", UNTAR_SCRIPT, folder, input=archive)
        if run.returncode == 3:
            self.exec(["mkdir", "-p", folder], user=owner).check(f"mkdir -p {folder}")
            run = self._as_root(f"Writing {path}", UNTAR_SCRIPT, folder, input=archive)
        if run.returncode != 0:
            raise self._fail(f"Writing {path}", run)

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of `path`; SandboxOutputLimit when larger than `max_bytes`."""
        limit = "" if max_bytes is None else str(max_bytes)
        run = self._as_root(f"Reading {path}", READ_SCRIPT, sandbox_path(path), limit)
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such file in the sandbox: {path}")
        if run.returncode == 4:
            raise SandboxFileNotFound(f"{path} is not a regular file (a directory?)")
        if run.returncode == 5:
            size = run.stderr.decode().strip()
            raise SandboxOutputLimit(f"{path} is {size} bytes, over the cap {max_bytes}")
        if run.returncode != 0:
            raise self._fail(f"Reading {path}", run)
        return run.stdout

    def put_dir(self, local_dir: str, path: str, *, owner: str = AGENT_USER) -> None:
        """Copy the contents of host folder `local_dir` into `path` inside, owned by `owner`."""
        archive = folder_tar(local_dir, owner=owner, private=owner == "root")
        run = self._as_root(f"Copying into {path}", UNTAR_SCRIPT, sandbox_path(path),
                            input=archive)  # fmt: skip
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        if run.returncode != 0:
            raise self._fail(f"Copying into {path}", run)

    def get_dir(self, path: str) -> bytes:
        """A gzip tar of the folder `path` inside, names relative to it."""
        run = self._as_root(f"Archiving {path}", TAR_SCRIPT, sandbox_path(path))
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        if run.returncode not in (0, 1):  # 1: a file changed while tar read it
            raise self._fail(f"Archiving {path}", run)
        return strip_top_folder(run.stdout)

    def close(self) -> None:
        """Kill whatever still runs, remove the cgroups and the folders; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        self._runner.kill_all()
        if self.cgroups is not None:
            self.cgroups.remove()
        shutil.rmtree(self.dir, ignore_errors=True)
        log.info("sandbox.close", backend="bwrap", sandbox=self.id)

    def __enter__(self) -> BwrapSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _checked_owner(user: str) -> str:
    if user not in ("root", "0", AGENT_USER, str(AGENT_UID)):
        raise ValueError(f"Unknown user {user!r}; the bwrap backend runs 'agent' or 'root'")
    return owner_of(user)


def remove_leftovers(*, everything: bool = False, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove the folders and cgroups of bwrap sandboxes whose process is gone (all of them
    with `everything`); return their ids."""
    removed: list[str] = []
    for path in sorted(state_dir.glob(f"{PREFIX}*")):
        sandbox_id = path.name.removeprefix(PREFIX)
        owner = sandbox_id.split("-", 1)[0]
        if not everything and owner.isdigit() and _process_alive(int(owner)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(sandbox_id)
        log.info("sandbox.gc", backend="bwrap", sandbox=sandbox_id)
    def leftover(name: str) -> bool:
        owner = name.split("-", 1)[0]
        return everything or not (owner.isdigit() and _process_alive(int(owner)))

    removed += [name for name in remove_leftover_groups(leftover) if name not in removed]
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
