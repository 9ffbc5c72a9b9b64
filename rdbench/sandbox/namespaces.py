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


class NamespaceHolder:
    """A bwrap run holding a sandbox's namespaces; `enter_argv()` joins them."""

    def __init__(self, bwrap_argv: list[str], *, prelude: list[str], log_path: Path):
        """Start `bwrap_argv` (bwrap and its options, without a command) behind the shell
        `prelude` (cgroups and rlimits). It returns at once; `pid` waits until it is ready."""
        self._nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self._log_path = log_path
        self._pid: int | None = None
        self._namespaces: list[str] = []
        info_read, info_write = os.pipe()
        argv = [*prelude, *bwrap_argv, "--die-with-parent", "--info-fd", str(info_write),
                "--", *HOLD]  # fmt: skip
        try:
            with log_path.open("wb") as log:
                self._proc = launch(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    pass_fds=[info_write],
                    start_new_session=True,
                    env={},
                )
        except OSError as error:
            os.close(info_read)
            raise SandboxUnavailable(f"Could not run bwrap: {error}") from error
        finally:
            os.close(info_write)
        self._info_read: int | None = info_read

    @property
    def pid(self) -> int:
        """The host pid of the sandbox's init, once the sandbox is set up (waits for it)."""
        if self._pid is None:
            self._pid = self._wait_ready()
        return self._pid

    def enter_argv(self) -> list[str]:
        """nsenter into every namespace of the sandbox, its root and its working folder (the
        agent's home); more nsenter options (then "--") and the command follow."""
        pid = self.pid
        return [self._nsenter, "-t", str(pid), *self._namespaces, "-r", "-w"]

    def _wait_ready(self) -> int:
        """Read bwrap's info (the init's pid) and the holder's "ready" line."""
        assert self._proc.stdout is not None and self._info_read is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        info = _read_to_end(self._info_read, deadline)
        ready = _read_to_end(self._proc.stdout.fileno(), deadline, until=READY)
        self._close_reading_ends()
        if ready != READY:
            self.stop()
            raise SandboxUnavailable(f"bwrap could not start the sandbox: {self._log_tail()}")
        details = json.loads(info)
        flags = {"mnt": "-m", "pid": "-p", "net": "-n", "ipc": "-i", "uts": "-u", "cgroup": "-C"}
        self._namespaces = [flag for name, flag in flags.items()
                            if f"{name}-namespace" in details]  # fmt: skip
        return int(details["child-pid"])

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
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()


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
