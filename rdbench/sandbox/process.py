"""Running one host process for a sandbox: stdin fed and output drained by threads (each
stream capped), a timeout that kills the whole tree, and the child placed in its cgroups and
rlimits before it runs (see cgroups.py)."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import resource
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rdbench.sandbox.base import FILE_SIZE_LIMIT
from rdbench.sandbox.cgroups import ExecCgroup

CPU_MARGIN_S = 10  # RLIMIT_CPU is timeout x cpus plus this
KILL_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Run:
    """What one process did, its output as bytes."""

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool  # stdout or stderr was cut at the cap


class ProcessRunner:
    """Runs processes to their end (or timeout) and remembers the live ones, to kill them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def run(
        self,
        argv: list[str],
        *,
        input: bytes | None,
        timeout: float,
        output_limit: int | None,
        cpus: float,
        leaf: ExecCgroup | None,
    ) -> Run:
        """Run `argv` in its own session (and cgroup `leaf`), keeping at most `output_limit`
        bytes of each stream (all with None); past `timeout` seconds kill it with everything
        it started. OSError when it cannot be started."""
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_preexec(leaf, timeout, cpus),
        )
        with self._lock:
            self._running.add(proc)
        assert proc.stdout is not None and proc.stderr is not None
        readers = [_Drain(proc.stdout, output_limit), _Drain(proc.stderr, output_limit)]
        threads: list[threading.Thread] = list(readers)
        if input is not None:
            threads.append(threading.Thread(target=_feed, args=(proc, input), daemon=True))
        for thread in threads:
            thread.start()
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill(proc, leaf)
            proc.wait()
        for thread in threads:
            thread.join(KILL_GRACE_S)
            if thread.is_alive():  # something still holds the pipes: kill it all
                kill(proc, leaf)
                thread.join(KILL_GRACE_S)
        with self._lock:
            self._running.discard(proc)
        return Run(
            returncode=proc.returncode,
            stdout=bytes(readers[0].data),
            stderr=bytes(readers[1].data),
            timed_out=timed_out,
            truncated=readers[0].truncated or readers[1].truncated,
        )

    def kill_all(self) -> None:
        """Kill every process still running (the waiting threads then return)."""
        with self._lock:
            running = list(self._running)
        for proc in running:
            kill(proc, None)


def kill(proc: subprocess.Popen[bytes], leaf: ExecCgroup | None) -> None:
    """Kill `proc`'s process group (a bwrap run's pid namespace dies with it), then anything
    left in its cgroup `leaf`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if leaf is not None:
        leaf.kill()


class _Drain(threading.Thread):
    """Reads a pipe to its end, keeping at most `limit` bytes (all with None)."""

    def __init__(self, pipe: object, limit: int | None):
        super().__init__(daemon=True)
        self._fd = pipe.fileno()  # type: ignore[attr-defined]
        self._pipe = pipe
        self._limit = limit
        self.data = bytearray()
        self.truncated = False

    def run(self) -> None:
        try:
            while chunk := os.read(self._fd, 1 << 16):
                if self._limit is not None and len(self.data) + len(chunk) > self._limit:
                    self.truncated = True
                    chunk = chunk[: max(self._limit - len(self.data), 0)]
                self.data += chunk
        finally:
            self._pipe.close()  # type: ignore[attr-defined]


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()


def _preexec(leaf: ExecCgroup | None, timeout: float, cpus: float) -> Callable[[], None]:
    """What the child does between fork and exec: die with its parent (the thread waiting
    for it: if rdbench is killed, so is the run), join the cgroups, set the rlimits."""
    wanted = [(resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT, FILE_SIZE_LIMIT)]
    if math.isfinite(timeout):
        cpu_s = math.ceil(timeout * max(cpus, 1.0)) + CPU_MARGIN_S
        wanted.append((resource.RLIMIT_CPU, cpu_s, cpu_s + 5))  # SIGXCPU, then SIGKILL
    limits = []
    for which, soft, hard in wanted:
        current = resource.getrlimit(which)[1]
        if current != resource.RLIM_INFINITY:  # only root with CAP_SYS_RESOURCE may raise it
            soft, hard = min(soft, current), min(hard, current)
        limits.append((which, (soft, hard)))
    parent = os.getpid()

    def setup() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the run dies with this thread
        if os.getppid() != parent:  # ... which died before that took effect
            os._exit(1)
        if leaf is not None:
            leaf.join()
        for which, soft_hard in limits:
            resource.setrlimit(which, soft_hard)

    return setup
