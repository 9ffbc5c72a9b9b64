"""The bubblewrap backend: namespaces, a read-only copy of the sandbox image, no daemon.

A sandbox is one long-lived `bwrap` run (see namespaces.py) over folders made for it under
/var/tmp/rdbench-bwrap-<id>/ (mode 700, the mount point of the sandbox's size-limited disk,
see disk.py): `home` is bound read-write at /home/agent, `tmp` and
`var-tmp` at /tmp and /var/tmp, and the root-only `grader` at /grader (empty in an agent's
sandbox). Everything else is the image's filesystem (see rootfs.py), read-only and nosuid. It
has its own pid, network (only `lo`), ipc, uts and cgroup namespaces and, as a Docker container,
a fresh /proc with /proc/sys read-only, /dev, a 64 MB /dev/shm and /dev/mqueue. Unlike Docker's,
/sys is a read-only folder showing only /sys/devices/system/cpu and, at /sys/fs/cgroup/cpuacct,
the sandbox's own cpuacct group (read-only, as Docker shows a container its cgroups, for a
grader's CPU counter): bwrap cannot mount a sysfs of the sandbox's own network namespace, and
the host's /sys would show the host's devices and network interfaces. bwrap reads its options
from a descriptor, so the sandbox's pid 1 shows no host path. Each command enters them with
`nsenter`, so, as in a container, what a command leaves running in the background lives on
until the sandbox is closed, and the sandbox dies with rdbench.

Users: bwrap runs as real root without a user namespace (one would map the agent to host
root). The agent's commands run as uid/gid AGENT_UID (base.py, a uid no host user has) with
no capabilities, an empty bounding set and no_new_privs; root's commands keep no capabilities
(setpriv), except in a grading sandbox, where root keeps those needed to run the agent's code
as the agent (GRADING_CAPS). This backend needs root.
A command gets the environment rdbench sets for it and nothing else; one given an `env` of the
caller's has it set by `env -i` once the identity is final, so nothing in it (say LD_PRELOAD)
reaches the privileged helpers.

Limits: a cgroup per sandbox (memory, processes, CPU; see cgroups.py) with a leaf per command,
and per command RLIMIT_CPU (timeout x cpus + a margin) and RLIMIT_FSIZE (see process.py). A
command past its timeout is killed with everything it started.

Walls: every command, the sandbox's init too, runs under a seccomp filter like Docker's default
profile (see seccomp.py): no user or other namespaces, keyrings, mounts, bpf, perf or kernel
modules, for the agent and root alike.
"""

from __future__ import annotations

import errno
import io
import math
import os
import posixpath
import shutil
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from rdbench.sandbox import hostdirs, reaper, seccomp
from rdbench.sandbox.archive import (
    EXPORT_SCRIPT,
    GET_DIR_LIMIT,
    IMPORT_SCRIPT,
    MIB,
    STREAM_TIMEOUT_S,
    ArchiveSink,
    check_usage,
    dir_in_memory,
    export_outcome,
    folder_tar,
    single_file_tar,
    too_large,
    unpack_outcome,
)
from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_UID,
    AGENT_USER,
    BASE_ENV,
    CHANNEL_DIR,
    GRADER_DIR,
    GRADING_CAPS,
    ArchiveError,
    ExecResult,
    Exported,
    SandboxConfig,
    SandboxError,
    SandboxFileNotFound,
    SandboxOutputLimit,
    SandboxUnavailable,
    disk_full_note,
    out_of_memory_note,
    owner_of,
    require_command,
    sandbox_path,
    user_env,
)
from rdbench.sandbox.cgroups import SandboxCgroups, remove_leftover_groups
from rdbench.sandbox.disk import SandboxDisk, disk_problem, ready_disk
from rdbench.sandbox.namespaces import NamespaceHolder
from rdbench.sandbox.process import ProcessRunner, Run, launch, limits_prelude, with_limits
from rdbench.sandbox.rootfs import (
    METADATA,
    ensure_rootfs,
    export_for_bwrap,
    image_env,
    rootfs_dir,
)
from rdbench.sandbox.terminal import PtyTerminal, open_pty_in, set_pty_size

log = structlog.get_logger()

STATE_DIR = hostdirs.STATE_DIR
PREFIX = "rdbench-bwrap-"
FILE_OP_TIMEOUT_S = 600.0
STDERR_KEPT = 64 * 1024
NAMESPACES = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try"]  # fmt: skip  (--unshare-all would add a user namespace)
# The folders bound read-write, by their path inside and their name in the sandbox's folder.
WRITABLE = {AGENT_HOME: "home", "/tmp": "tmp", "/var/tmp": "var-tmp", GRADER_DIR: "grader"}
# The host's own file operations (tar, cat as root) read and write whatever the agent left.
FILE_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"]
SHM_BYTES = 64 * 1024 * 1024  # /dev/shm, as Docker sizes it
# What /sys shows (read-only): the CPUs, which libraries read to size their thread pools.
SYS_SHOWN = ["/sys/devices/system/cpu"]
CGROUP_SHOWN = "/sys/fs/cgroup/cpuacct"  # where the sandbox's CPU-accounting group is shown
TTY_GID = 5  # the group `tty` of Debian images, which owns terminals (as on Docker)
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


def bwrap_problem() -> str | None:
    """Why the bwrap backend cannot run here (and how to fix it), or None when it can."""
    if shutil.which("bwrap") is None:
        return (
            "bubblewrap (bwrap) is not installed; install it with `apt-get install bubblewrap`, "
            "or run with --sandbox docker"
        )
    if shutil.which("nsenter") is None:
        return "nsenter is not installed; install it with `apt-get install util-linux`"
    if os.geteuid() != 0:
        return (
            "The bwrap backend needs root: it runs commands as root or as the agent user "
            f"(uid {AGENT_UID}) without a user namespace. Run rdbench as root, or use "
            "--sandbox docker"
        )
    return disk_problem()


class BwrapSandbox:
    """A sandbox: one long-lived bwrap run over per-sandbox folders, which every command
    enters. Usable on construction (the first command waits until bwrap has set it up)."""

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
        self._pristine = True  # nothing has run inside yet (see put_dir)
        self._runner = ProcessRunner()
        self.cgroups: SandboxCgroups | None = None
        self._holder: NamespaceHolder | None = None
        self.disk: SandboxDisk | None = None
        reaper.watch("bwrap")
        try:
            self._make_folders()
            self.cgroups = SandboxCgroups.create(
                self.id, memory_mb=config.memory_mb, pids=config.pids, cpus=config.cpus
            )
            init_group = self.cgroups.init_group() if self.cgroups is not None else None
            self._holder = NamespaceHolder(
                self._bwrap_argv(),
                prelude=limits_prelude(init_group, math.inf, config.cpus),
                log_path=self.dir / "bwrap.log",
                seccomp=seccomp.program(),
            )
        except BaseException:
            self.close()
            raise
        log.info("sandbox.start", backend="bwrap", sandbox=self.id, rootfs=str(self.rootfs),
                 cgroups=self.cgroups is not None)  # fmt: skip

    def _make_folders(self) -> None:
        """The sandbox's disk, mounted at its folder, with the writable places on it (the
        agent's home starts empty, as on docker, where the image's is hidden by the disk)."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.disk = ready_disk(self.dir.parent, self.config.disk_mb)
        self.dir = self.disk.folder  # the sandbox is named after its disk's folder
        self.id = self.dir.name.removeprefix(PREFIX)
        self.disk.make_folders(grader=True)

    def _mounts(self) -> list[str]:
        """The sandbox's filesystem, as Docker lays out a container's (see the module's
        docstring for where it differs)."""
        binds = [arg for inside, name in WRITABLE.items()
                 for arg in ("--bind", str(self.dir / name), inside)]  # fmt: skip
        return [
            "--ro-bind", str(self.rootfs), "/",
            *binds,
            "--proc", "/proc",
            # sysctls show the reader's own namespaces, so the host's /proc/sys, read-only,
            # is the sandbox's; sysrq-trigger could reboot the host
            "--ro-bind", "/proc/sys", "/proc/sys",
            "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
            "--dev", "/dev",
            "--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
            "--mqueue", "/dev/mqueue",
            "--perms", "0755", "--tmpfs", "/sys",
            *(arg for path in SYS_SHOWN for parent in _parents(path, below="/sys")
              for arg in ("--perms", "0755", "--dir", parent)),  # else bwrap makes them 0700
            *(arg for path in SYS_SHOWN for arg in ("--ro-bind-try", path, path)),
            *self._cgroup_mounts(),
            "--remount-ro", "/sys",
            *self._channel_mounts(),
        ]  # fmt: skip

    def _channel_mounts(self) -> list[str]:
        """A person's channel folder (config.channel_dir), read-only at CHANNEL_DIR. The
        image's /run (the read-only root) has no such folder, so /run is a read-only tmpfs
        here holding the image's (empty) /run/lock and /run/mount and the channel."""
        if self.config.channel_dir is None:
            return []
        return ["--perms", "0755", "--tmpfs", "/run",
                "--perms", "1777", "--dir", "/run/lock",
                "--perms", "0755", "--dir", "/run/mount",
                "--ro-bind", self.config.channel_dir, CHANNEL_DIR,
                "--remount-ro", "/run"]  # fmt: skip

    def _cgroup_mounts(self) -> list[str]:
        """The sandbox's CPU-accounting group (see cgroups.py), read-only at CGROUP_SHOWN, as a
        container's own group: its cpuacct.usage counts every process of the sandbox. The
        mount is read-only and nothing inside may mount (seccomp, no CAP_SYS_ADMIN), so no
        process can leave the group, make one, or reset the counter."""
        if self.cgroups is None or self.cgroups.accounting is None:
            return []
        return [*(arg for parent in _parents(CGROUP_SHOWN, below="/sys")
                  for arg in ("--perms", "0755", "--dir", parent)),
                "--ro-bind", str(self.cgroups.accounting), CGROUP_SHOWN]  # fmt: skip

    def _bwrap_argv(self) -> list[str]:
        """The long-lived bwrap run that makes the sandbox (its command is added later)."""
        return [self._bwrap, *self._mounts(), *NAMESPACES, "--new-session",
                "--hostname", "sandbox", "--clearenv", "--chdir", AGENT_HOME,
                "--cap-drop", "ALL"]  # fmt: skip

    def _argv(
        self, cmd: list[str], *, owner: str, cwd: str, env: dict[str, str],
        callers_env: bool, caps: list[str], timeout: float,
    ) -> tuple[list[str], dict[str, str]]:  # fmt: skip
        """The command line that runs `cmd` inside, and the environment to start it with.

        The command enters the sandbox (nsenter), takes its final identity (see _identity),
        and then runs: straight away when it runs in the agent's home with rdbench's own
        environment, else through `env -i -C cwd` (a caller's variables are then set only
        once the identity is final). Before any of that it sets its rlimits for `timeout`
        (see with_limits). A missing command exits 127, as in a shell."""
        assert self._holder is not None
        enter = [*self._holder.enter_argv(), *_identity(owner, caps)]
        if cwd == AGENT_HOME and not callers_env:
            return [*enter, *with_limits(cmd, timeout, self.config.cpus)], {**env, "PWD": cwd}
        assignments = [f"PWD={cwd}", *(f"{key}={value}" for key, value in env.items())]
        switch = ["/usr/bin/env", "-i", "-C", cwd, *assignments, *cmd]
        return [*enter, *with_limits(switch, timeout, self.config.cpus)], {}

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
        require_command(cmd, cwd=cwd, env=env)
        user = user or AGENT_USER
        owner = _checked_owner(user)
        caps = GRADING_CAPS if owner == "root" and self.config.grading else []
        limit = timeout if timeout is not None else self.config.exec_timeout_s
        run, oom_kills = self._run(
            cmd, owner=owner, cwd=posixpath.normpath(cwd or AGENT_HOME),
            env=self._command_env(user, env), callers_env=bool(env), caps=caps,
            input=input, timeout=limit, output_limit=self.config.output_limit,
        )  # fmt: skip
        stderr = run.stderr.decode("utf-8", "replace")
        if oom_kills:
            stderr += out_of_memory_note(self.config.memory_mb)
        if self.disk is not None and self.disk.full():
            stderr += disk_full_note(self.config.disk_mb)
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
        self, cmd: list[str], *, owner: str, cwd: str, env: dict[str, str], callers_env: bool,
        caps: list[str], input: bytes | None, timeout: float, output_limit: int | None,
        stdin_file: BinaryIO | None = None, sink: Callable[[bytes], bool] | None = None,
    ) -> tuple[Run, int]:  # fmt: skip
        """Run `cmd` inside, in an empty cgroup leaf; what it did and its out-of-memory kills."""
        if self._closed:
            raise SandboxUnavailable(f"The bwrap sandbox {self.id} is closed")
        self._pristine = False
        argv, start_env = self._argv(cmd, owner=owner, cwd=cwd, env=env,
                                     callers_env=callers_env, caps=caps,
                                     timeout=timeout)  # fmt: skip
        leaf = self.cgroups.exec_group() if self.cgroups is not None else None
        oom_kills = 0
        try:
            run = self._runner.run(
                argv, env=start_env,
                pass_fds=self._holder.fds if self._holder is not None else None,
                pid_namespace=self._holder.pid_namespace if self._holder is not None else None,
                input=input, timeout=timeout, output_limit=output_limit, leaf=leaf,
                stdin_file=stdin_file, sink=sink,
            )  # fmt: skip
        except OSError as error:
            # a pid namespace whose init is gone takes no new process (ENOMEM)
            if error.errno == errno.ENOMEM or (self._holder and not self._holder.alive()):
                raise SandboxUnavailable(
                    f"The bwrap sandbox {self.id} has ended (see its log)") from error
            raise SandboxUnavailable(f"Could not run nsenter: {error}") from error
        finally:
            if leaf is not None and self.cgroups is not None:
                oom_kills = leaf.new_oom_kills()
                self.cgroups.release(leaf)
        if run.returncode != 0 and self._holder is not None and not self._holder.alive():
            raise SandboxUnavailable(f"The bwrap sandbox {self.id} has ended (see its log)")
        return run, oom_kills

    def open_terminal(
        self,
        cmd: list[str],
        *,
        user: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        size: tuple[int, int] = (24, 80),
        timeout: float | None = None,
    ) -> PtyTerminal:
        """Start `cmd` inside with a terminal: a pseudo-terminal of the sandbox's own
        /dev/pts (see open_pty_in), made by the host, whose slave end the command holds as
        its controlling terminal (`setsid --ctty` from the image), joined to
        the sandbox as every command is (nsenter, identity, seccomp, a cgroup leaf, rlimits
        for `timeout`, default the exec timeout). Closing the terminal kills the command and
        what is left in its leaf. See rdbench/sandbox/terminal.py."""
        require_command(cmd, cwd=cwd, env=env)
        if self._closed or self._holder is None:
            raise SandboxUnavailable(f"The bwrap sandbox {self.id} is closed")
        user = user or AGENT_USER
        owner = _checked_owner(user)
        caps = GRADING_CAPS if owner == "root" and self.config.grading else []
        limit = timeout if timeout is not None else self.config.exec_timeout_s
        self._pristine = False
        argv, start_env = self._argv(
            ["/usr/bin/setsid", "--ctty", *cmd], owner=owner,
            cwd=posixpath.normpath(cwd or AGENT_HOME), env=self._command_env(user, env),
            callers_env=bool(env), caps=caps, timeout=limit,
        )  # fmt: skip
        master, slave = open_pty_in(self._holder.root)
        leaf = self.cgroups.exec_group() if self.cgroups is not None else None
        try:
            if owner == AGENT_USER:  # as Docker gives a container's user its terminal
                os.fchown(slave, AGENT_UID, TTY_GID)
            set_pty_size(slave, *size)
            process = launch(
                argv, confined=True, cgroup=leaf, pid_namespace=self._holder.pid_namespace,
                stdin=slave, stdout=slave, stderr=slave, env=start_env,
                pass_fds=self._holder.fds,
            )  # fmt: skip
        except OSError as error:
            os.close(master)
            if leaf is not None and self.cgroups is not None:
                self.cgroups.release(leaf)
            raise SandboxUnavailable(f"Could not start a terminal in {self.id}: {error}") from error
        finally:
            os.close(slave)

        def end() -> None:
            if leaf is not None and self.cgroups is not None:
                leaf.kill()
                self.cgroups.release(leaf)

        log.info("sandbox.terminal", backend="bwrap", sandbox=self.id, user=owner)
        return PtyTerminal(master, process, on_close=end)

    def _as_root(
        self, what: str, script: str, *args: str, input: bytes | None = None,
        output_limit: int | None = None,
    ) -> Run:  # fmt: skip
        """Run one of the backend's own shell scripts as root, able to read and write every
        file (the host's privileged channel, like docker's archive API)."""
        run, _ = self._run(
            ["/bin/sh", "-c", script, "sh", *args], owner="root", cwd="/",
            env=self._command_env("root", None), callers_env=False, caps=FILE_CAPS,
            input=input, timeout=FILE_OP_TIMEOUT_S, output_limit=output_limit,
        )  # fmt: skip
        if run.timed_out:
            raise SandboxError(f"{what} took longer than {FILE_OP_TIMEOUT_S:.0f} s and was killed")
        return run

    def _fail(self, what: str, run: Run) -> SandboxError:
        if run.returncode == 6:
            return SandboxError(f"{what} failed: {READ_ONLY_HINT}")
        message = run.stderr.decode("utf-8", "replace").strip()[-500:]
        hint = f" ({READ_ONLY_HINT})" if "Read-only file system" in message else ""
        return SandboxError(f"{what} failed (exit {run.returncode}): {message}{hint}")

    def write_file(self, path: str, data: bytes | str, *, user: str = AGENT_USER) -> None:
        """Create or replace `path` (parent folders are made as needed), owned by `user`."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        folder, name = posixpath.split(sandbox_path(path))
        archive = single_file_tar(name, payload, owner=user)
        run = self._as_root(f"Writing {path}", UNTAR_SCRIPT, folder, input=archive)
        if run.returncode == 3:
            self.exec(["mkdir", "-p", folder], user=user).check(f"mkdir -p {folder}")
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

    def put_dir(self, local_dir: str, path: str, *, user: str = AGENT_USER) -> None:
        """Copy the contents of host folder `local_dir` into `path` inside, owned by `user`."""
        archive = folder_tar(local_dir, owner=user, private=user == "root")
        host_folder = self._pristine_host_folder(sandbox_path(path))
        if host_folder is not None:
            _extract_trusted(archive, host_folder)
            return
        run = self._as_root(f"Copying into {path}", UNTAR_SCRIPT, sandbox_path(path),
                            input=archive)  # fmt: skip
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        if run.returncode != 0:
            raise self._fail(f"Copying into {path}", run)

    def _pristine_host_folder(self, path: str) -> Path | None:
        """The host folder behind `path` inside, while nothing has run in the sandbox yet
        (its folders then hold only what rdbench put there, so the host may write into them
        directly, which is much faster than a command). None when that is not the case."""
        if not self._pristine:
            return None
        for inside, name in WRITABLE.items():
            if path == inside or path.startswith(inside + "/"):
                host = self.dir / name / posixpath.relpath(path, inside)
                if not host.is_dir() or host.is_symlink():
                    raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
                return host
        return None

    def get_dir(self, path: str, *, max_bytes: int = GET_DIR_LIMIT) -> bytes:
        """A gzip tar of the folder `path` inside, names relative to it (held in memory:
        for small folders; export_dir streams)."""
        return dir_in_memory(self, path, max_bytes)

    def export_dir(
        self, path: str, dest: BinaryIO, *, max_bytes: int | None = None, user: str = AGENT_USER
    ) -> Exported:
        """Stream a gzip tar of the contents of folder `path`, made inside by GNU tar as
        `user`, into `dest`; ArchiveTooLarge past `max_bytes` (see the Sandbox protocol)."""
        folder = sandbox_path(path)
        check_usage(self, folder, max_bytes, user=user)
        sink = ArchiveSink(dest, max_bytes)
        owner = _checked_owner(user)
        run, _ = self._run(
            ["/bin/sh", "-c", EXPORT_SCRIPT, "sh", folder], owner=owner, cwd="/",
            env=self._command_env(user, None), callers_env=False, caps=[], input=None,
            timeout=STREAM_TIMEOUT_S, output_limit=STDERR_KEPT, sink=sink.add,
        )  # fmt: skip
        if sink.over and max_bytes is not None:
            raise too_large(f"its archive passed {max_bytes / MIB:.1f} MB", max_bytes)
        if run.timed_out:
            raise ArchiveError(f"Archiving {path} took longer than {STREAM_TIMEOUT_S:.0f} s")
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        skipped = export_outcome(run.returncode, run.stderr.decode("utf-8", "replace"), path)
        return Exported(size=sink.size, skipped=skipped)

    def import_archive(self, source: Path, path: str, *, user: str = AGENT_USER) -> None:
        """Unpack the host's gzip tar `source` into folder `path`: GNU tar, run inside as
        `user`, reads the open file as its stdin."""
        with source.open("rb") as file:
            run, _ = self._run(
                ["/bin/sh", "-c", IMPORT_SCRIPT, "sh", sandbox_path(path)],
                owner=_checked_owner(user), cwd="/", env=self._command_env(user, None),
                callers_env=False, caps=[], input=None, timeout=STREAM_TIMEOUT_S,
                output_limit=STDERR_KEPT, stdin_file=file,
            )  # fmt: skip
        if run.timed_out:
            raise ArchiveError(f"Unpacking the workspace took longer than {STREAM_TIMEOUT_S:.0f} s")
        if run.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        unpack_outcome(run.returncode, run.stderr.decode("utf-8", "replace"))

    def close(self) -> None:
        """Kill whatever still runs, remove the cgroups and the folders; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        self._runner.kill_all()
        if self._holder is not None:
            self._holder.stop()
        if self.cgroups is not None:
            self.cgroups.remove()
        if self.disk is not None:
            self.disk.remove()
        else:  # the disk was never made: remove what was (never recursing in Python)
            hostdirs.remove(self.dir)
            hostdirs.remove(self.dir.with_name(self.dir.name + ".img"))
        log.info("sandbox.close", backend="bwrap", sandbox=self.id)

    def __enter__(self) -> BwrapSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _identity(owner: str, caps: list[str]) -> list[str]:
    """What follows `nsenter ... -w` to give the command its identity: setpriv (from the
    sandbox's image) clears the bounding set but for `caps` (names without CAP_), then the
    agent switches to uid/gid AGENT_UID with no supplementary groups, which leaves it no
    capabilities (no_new_privs is inherited from the launcher thread, and every mount is
    nosuid, so none can be regained); root keeps only `caps`."""
    kept = "".join(f",+{cap.lower()}" for cap in caps)
    switch = [f"--reuid={AGENT_UID}", f"--regid={AGENT_UID}"] if owner == AGENT_USER else []
    return ["--", "/usr/bin/setpriv", *switch, "--clear-groups", f"--inh-caps=-all{kept}",
            f"--bounding-set=-all{kept}", "--"]  # fmt: skip


def _parents(path: str, *, below: str) -> list[str]:
    """The folders between `below` and `path`, outermost first: _parents("/a/b/c/d", below="/a")
    is ["/a/b", "/a/b/c"]."""
    parents: list[str] = []
    folder = posixpath.dirname(path)
    while folder.startswith(below + "/"):
        parents.insert(0, folder)
        folder = posixpath.dirname(folder)
    return parents


def _extract_trusted(archive: bytes, folder: Path) -> None:
    """Unpack a tar rdbench made from a host folder into `folder`, owners and modes as in
    the archive. Fully trusted: both the archive and the folder are rdbench's own."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        tar.extractall(folder, numeric_owner=True, filter="fully_trusted")


def _checked_owner(user: str) -> str:
    if user not in ("root", "0", AGENT_USER, str(AGENT_UID)):
        raise ValueError(f"Unknown user {user!r}; the bwrap backend runs 'agent' or 'root'")
    return owner_of(user)


def remove_leftovers(*, everything: bool = False, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove the folders, disks and cgroups of bwrap sandboxes whose process is gone (all of
    them with `everything`); return their ids."""
    gone = hostdirs.remove_dead(everything=everything, kinds={"bwrap"}, state_dir=state_dir)
    removed = [name.removeprefix(PREFIX) for name in gone if not name.endswith(".img")]

    def leftover(name: str) -> bool:
        owner = name.split("-", 1)[0]
        return everything or not (owner.isdigit() and hostdirs.process_alive(int(owner)))

    removed += [name for name in remove_leftover_groups(leftover) if name not in removed]
    return removed


class BwrapBackend:
    """The bubblewrap backend as registered (`rdbench.sandboxes` entry point `bwrap`): no
    daemon, the sandbox image's files exported once (prepare) and run read-only."""

    name = "bwrap"
    priority = 20

    def problem(self) -> str | None:
        """Why no bwrap sandbox can start here (no bubblewrap, not root, no loop devices, or
        no root filesystem and no Docker engine to export one), or None."""
        problem = bwrap_problem()
        if problem is not None or (rootfs_dir() / METADATA).is_file():
            return problem
        from rdbench.sandbox.docker import docker_available

        if not docker_available():
            return (
                f"The bwrap backend has no root filesystem ({rootfs_dir()} is missing) and "
                "no Docker engine answers to export one. Start Docker once and run "
                "`rdbench image build`; after that bwrap works without Docker."
            )
        return None

    def prepare(self, image: str) -> str | None:
        """Export the built image's files for bwrap (where bubblewrap is installed), so that
        bwrap works later without Docker; the line naming where they are."""
        rootfs = export_for_bwrap(image)
        return None if rootfs is None else f"bwrap root filesystem: {rootfs}"

    def remove_leftovers(self, everything: bool) -> list[str]:
        """Remove the folders, disks and cgroups of sandboxes whose run ended; their ids."""
        return remove_leftovers(everything=everything)

    def start(self, config: SandboxConfig, **options: Any) -> BwrapSandbox:
        """A new bwrap sandbox (options: `rootfs`, `state_dir`)."""
        return BwrapSandbox(config, **options)
