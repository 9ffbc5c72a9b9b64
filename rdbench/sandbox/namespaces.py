"""The bwrap backend's namespaces, made once per sandbox and entered by every command.

A `NamespaceHolder` is one long-lived `bwrap` run: it makes the sandbox's mounts and its pid,
network, ipc, uts and cgroup namespaces around a process that only waits. Commands then join
those namespaces with `nsenter`, which costs a fraction of a new bwrap run, and processes a
command leaves in the background live on until the sandbox is closed, as in a container.

The holder runs with `--die-with-parent`: when the thread that started it ends, bwrap and the
sandbox's init (pid 1 inside) are killed, and with that init every process left in the
sandbox's pid namespace. Every holder is started by rdbench's launcher thread (see process.py),
which lasts as long as rdbench, so a sandbox dies with rdbench, however it ends (even
SIGKILL), and with `stop()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from rdbench.sandbox.base import SandboxUnavailable
from rdbench.sandbox.process import launch

READY = b"ready\n"
START_TIMEOUT_S = 60.0
# What runs inside: say that the sandbox is set up, then wait to be killed.
HOLD = ["/bin/sh", "-c", "echo ready && exec sleep infinity"]
# bwrap's name for each namespace (in its info and under /proc/<pid>/ns) -> nsenter's option.
NAMESPACE_OPTIONS = {"mnt": "--mount", "pid": "--pid", "net": "--net", "ipc": "--ipc",
                     "uts": "--uts", "cgroup": "--cgroup"}  # fmt: skip


class NamespaceHolder:
    """A bwrap run holding a sandbox's namespaces; `enter_argv()` joins them."""

    def __init__(
        self, bwrap_argv: list[str], *, prelude: list[str], log_path: Path,
        seccomp: bytes | None = None,
    ):  # fmt: skip
        """Start `bwrap_argv` (bwrap and its options, without a command) behind the shell
        `prelude` (cgroups and rlimits), its init and everything that runs as it under the
        seccomp program `seccomp` (see seccomp.py). It returns at once; `pid` waits until it
        is ready.

        bwrap reads its options from a descriptor (`--args`), so that its command line, which
        the sandbox's pid 1 shows to everyone inside, holds no host path."""
        self._nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self._log_path = log_path
        self._fds: dict[str, int] | None = None  # nsenter option -> open descriptor
        info_read, info_write = os.pipe()
        options = [*bwrap_argv[1:], "--die-with-parent", "--info-fd", str(info_write)]
        handed_over = [info_write]
        try:
            if seccomp is not None:
                handed_over.append(_memfd("rdbench-seccomp", seccomp))
                options += ["--seccomp", str(handed_over[-1])]
            handed_over.append(_memfd("rdbench-args", b"".join(
                os.fsencode(option) + b"\0" for option in options)))
            argv = [*prelude, bwrap_argv[0], "--args", str(handed_over[-1]), "--", *HOLD]
            with log_path.open("wb") as log:
                self._proc = launch(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    pass_fds=handed_over,
                    start_new_session=True,
                    env={},
                )
        except OSError as error:
            os.close(info_read)
            raise SandboxUnavailable(f"Could not run bwrap: {error}") from error
        finally:
            for fd in handed_over:
                os.close(fd)
        self._info_read: int | None = info_read

    @property
    def fds(self) -> list[int]:
        """The descriptors `enter_argv()` names, to pass on to nsenter."""
        return [fd for option, fd in self._opened().items() if option != "--pid"]

    @property
    def pid_namespace(self) -> int:
        """A descriptor of the sandbox's pid namespace: a command must be born in it (see
        process.launch), as nsenter cannot move itself there."""
        return self._opened()["--pid"]

    @property
    def root(self) -> int:
        """A descriptor of the sandbox's root folder, held open since it started (to open
        a device of its own /dev from the host, as a terminal does)."""
        return self._opened()["--root"]

    def enter_argv(self) -> list[str]:
        """nsenter into every other namespace of the sandbox, its root and its working folder
        (the agent's home), through descriptors held open since the sandbox started (so a pid
        that the kernel reused can never lead elsewhere); pass `fds` with it, and start it in
        `pid_namespace`. It does not fork: the process that runs it becomes the command. More
        nsenter options (then "--") and the command follow."""
        options = [(option, fd) for option, fd in self._opened().items() if option != "--pid"]
        return [self._nsenter, "--no-fork",
                *(f"{option}=/proc/self/fd/{fd}" for option, fd in options)]  # fmt: skip

    def _opened(self) -> dict[str, int]:
        """nsenter option -> open descriptor; waits until the sandbox is set up."""
        if self._fds is None:
            self._fds = self._wait_ready()
        return self._fds

    def _wait_ready(self) -> dict[str, int]:
        """Read bwrap's info and the holder's "ready" line; open the init's namespaces, root
        and working folder, and check they are the sandbox's."""
        assert self._proc.stdout is not None and self._info_read is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        info = _read_to_end(self._info_read, deadline)
        ready = _read_to_end(self._proc.stdout.fileno(), deadline, until=READY)
        self._close_reading_ends()
        if ready != READY:
            self.stop()
            raise SandboxUnavailable(f"bwrap could not start the sandbox: {self._log_tail()}")
        details = json.loads(info)
        pid = int(details["child-pid"])
        fds: dict[str, int] = {}
        try:
            for name, option in NAMESPACE_OPTIONS.items():
                if f"{name}-namespace" in details:
                    fds[option] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                    if os.fstat(fds[option]).st_ino != details[f"{name}-namespace"]:
                        raise SandboxUnavailable(f"The sandbox's init (pid {pid}) is gone")
            for option, link in (("--root", "root"), ("--wd", "cwd")):
                fds[option] = os.open(f"/proc/{pid}/{link}",
                                      os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # fmt: skip
        except (OSError, SandboxUnavailable) as error:
            for fd in fds.values():
                os.close(fd)
            self.stop()
            raise SandboxUnavailable(f"The bwrap sandbox ended as it started: {error}") from error
        return fds

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self._log_path.read_text(errors="replace").strip()[-500:] or "no message"
        return "no message"

    def _close_reading_ends(self) -> None:
        if self._info_read is not None:
            os.close(self._info_read)
            self._info_read = None
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def alive(self) -> bool:
        """True while the bwrap run is going."""
        return self._proc.poll() is None

    def stop(self) -> None:
        """Kill bwrap (everything inside dies with it) and reap it. Safe to repeat."""
        self._close_reading_ends()
        for fd in (self._fds or {}).values():
            os.close(fd)
        self._fds = {}
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()


def _memfd(name: str, data: bytes) -> int:
    """A descriptor of an anonymous file holding `data`, read from its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_to_end(fd: int, deadline: float, until: bytes | None = None) -> bytes:
    """What `fd` gives until end of file (or until `until` was read), waiting at most until
    `deadline`."""
    data = b""
    while until is None or data != until:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data
