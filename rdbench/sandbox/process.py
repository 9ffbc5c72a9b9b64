"""Running one host process for a sandbox: stdin fed and output drained in the calling thread
(each stream capped), a timeout that kills the whole tree, and its limits.

A command is born in its cgroup leaf: the launcher thread that starts it steps into the leaf
for the moment it does (see cgroups.py). Its rlimits are set by a shell before it runs
anything: its own when it is a `sh -c`/`bash -c` (the limits open its script), else a
`/bin/sh -c` in front of it (`with_limits`). A shell rather than a subprocess preexec_fn: a
preexec_fn makes Python fork its whole process instead of vfork, which costs more
(milliseconds in a large process) than the shell does. A sandbox's long-lived holder process
joins its cgroup and sets its limits through `limits_prelude`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import posixpath
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rdbench.sandbox import seccomp
from rdbench.sandbox.base import FILE_SIZE_LIMIT
from rdbench.sandbox.cgroups import ExecCgroup

CPU_MARGIN_S = 10  # RLIMIT_CPU is timeout x cpus plus this
KILL_GRACE_S = 10.0
PRELUDE_FAILED = 125  # the prelude's exit status when it could not set the limits up
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWPID = 0x20000000
_launchers: dict[bool, ThreadPoolExecutor] = {}  # confined or not -> its launcher thread
_launcher_lock = threading.Lock()


def _forget_launchers() -> None:
    """In a forked child (multiprocessing, gymnasium's AsyncVectorEnv): the parent's launcher
    threads do not exist here, so the child starts its own on first use."""
    global _launcher_lock
    _launchers.clear()
    _launcher_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_launchers)


def launch(
    argv: list[str], *, confined: bool = False, cgroup: ExecCgroup | None = None,
    pid_namespace: int | None = None, **popen_options: Any,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """subprocess.Popen(argv, ...) from one of rdbench's two launcher threads; with `cgroup`,
    the thread starts it from inside that leaf, so it is born in the leaf's groups, and with
    `pid_namespace` (a descriptor) it is born in that pid namespace.

    Each thread lasts as long as rdbench, so a child's parent-death signal (bwrap's
    --die-with-parent) fires when rdbench ends and not before; and each has no_new_privs set,
    which every process it starts inherits: nothing they run can gain privileges on exec
    (set-user-ID files, file capabilities). The `confined` thread is also under the sandbox
    seccomp filter (see seccomp.py), which every command started from it inherits; the other
    starts what must set a sandbox up (bwrap mounts and makes namespaces)."""
    with _launcher_lock:
        if confined not in _launchers:
            name = "rdbench-confined-launcher" if confined else "rdbench-launcher"
            setup = _no_new_privs_and_seccomp if confined else _no_new_privs
            _launchers[confined] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=name, initializer=setup
            )
        launcher = _launchers[confined]

    def start() -> subprocess.Popen[bytes]:
        with contextlib.ExitStack() as stack:
            if cgroup is not None:
                stack.enter_context(cgroup.holding_this_thread())
            if pid_namespace is not None:
                stack.enter_context(_children_in(pid_namespace))
            return subprocess.Popen(argv, **popen_options)

    try:
        return launcher.submit(start).result()
    except BrokenThreadPool as error:  # its no_new_privs or seccomp set-up failed
        raise OSError(f"rdbench's launcher thread could not be set up: {error}") from error


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def _children_in(pid_namespace: int) -> Iterator[None]:
    """The calling thread's new processes are born in `pid_namespace` (setns on a pid
    namespace changes only where the thread's children go), until the block ends."""
    libc = _libc()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # the process's own
    try:
        if libc.setns(pid_namespace, CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "setns into the sandbox's pid namespace failed")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWPID) != 0:
                # never expected; the thread would start every later command in this
                # sandbox's pid namespace, so stop rather than go on (the reaper cleans up)
                os.abort()
    finally:
        os.close(own)


def _no_new_privs() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _no_new_privs_and_seccomp() -> None:
    _no_new_privs()
    seccomp.install()


@dataclass(frozen=True)
class Run:
    """What one process did, its output as bytes."""

    returncode: int  # as a shell reports it: 128 + the signal that killed it
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
        leaf: ExecCgroup | None,
        pid_namespace: int | None = None,
        env: dict[str, str] | None = None,
        pass_fds: list[int] | None = None,
        stdin_file: BinaryIO | None = None,
        sink: Callable[[bytes], bool] | None = None,
    ) -> Run:
        """Run `argv` in its own session (with `env` and the descriptors `pass_fds`), under
        the sandbox seccomp filter (started from the confined launcher thread) and born in
        the cgroup `leaf` and the pid namespace `pid_namespace` (a descriptor), keeping
        at most `output_limit` bytes of each stream (all with None); past `timeout` seconds
        kill it with everything it started, including what is left in its cgroup `leaf`.
        With `stdin_file` it reads that open file instead of `input`; with `sink`, its stdout
        goes to `sink` chunk by chunk (never kept) until `sink` returns False, when it is
        killed. OSError when it cannot be started."""
        stdin: Any = subprocess.DEVNULL if input is None else subprocess.PIPE
        proc = launch(
            argv,
            confined=True,
            cgroup=leaf,
            pid_namespace=pid_namespace,
            stdin=stdin_file if stdin_file is not None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={} if env is None else env,
            pass_fds=pass_fds or (),
        )
        with self._lock:
            self._running.add(proc)
        try:
            timed_out, stdout, stderr = _communicate(proc, input, timeout, output_limit, leaf,
                                                     sink=sink)  # fmt: skip
        finally:
            with self._lock:
                self._running.discard(proc)
        return Run(
            returncode=proc.returncode if proc.returncode >= 0 else 128 - proc.returncode,
            stdout=bytes(stdout.data),
            stderr=bytes(stderr.data),
            timed_out=timed_out,
            truncated=stdout.truncated or stderr.truncated,
        )

    def kill_all(self) -> None:
        """Kill every process still running (the calls waiting for them then return)."""
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


@dataclass
class _Capture:
    """One output stream's bytes, at most `limit` of them (all with None)."""

    limit: int | None
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        if self.limit is not None and len(self.data) + len(chunk) > self.limit:
            self.truncated = True
            chunk = chunk[: max(self.limit - len(self.data), 0)]
        self.data += chunk


@dataclass
class _Forward(_Capture):
    """A stream handed on to `sink` chunk by chunk instead of kept; `stopped` once the sink
    wanted no more."""

    sink: Callable[[bytes], bool] | None = None
    stopped: bool = False

    def add(self, chunk: bytes) -> None:
        assert self.sink is not None
        if chunk and not self.stopped and not self.sink(chunk):
            self.stopped = True


def _communicate(
    proc: subprocess.Popen[bytes], data: bytes | None, timeout: float, limit: int | None,
    leaf: ExecCgroup | None, *, sink: Callable[[bytes], bool] | None = None,
) -> tuple[bool, _Capture, _Capture]:  # fmt: skip
    """Feed `data` to stdin, read stdout and stderr and watch the process, all in this
    thread; whether it timed out, and its output.

    With `sink`, stdout goes there instead, and the whole tree is killed once it returns
    False. Past `timeout` the whole tree is killed. Once the process is over (or killed), whatever
    still holds its output open gets KILL_GRACE_S to let go, then is killed too; after that
    the pipes are left."""
    assert proc.stdout is not None and proc.stderr is not None
    stdout = _Capture(limit) if sink is None else _Forward(None, sink=sink)
    stderr = _Capture(limit)
    outputs = {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr}
    pidfd = os.pidfd_open(proc.pid)
    sent = 0
    timed_out = killed = False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in outputs:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(pidfd, selectors.EVENT_READ)
        if data is not None and proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            events = selector.select(None if math.isinf(remaining) else max(remaining, 0))
            if not events and time.monotonic() >= deadline:
                if killed:
                    break  # something outside the tree holds the pipes: leave them
                timed_out |= pidfd in selector.get_map()
                kill(proc, leaf)
                killed, deadline = True, time.monotonic() + KILL_GRACE_S
            for key, _ in events:
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                    if not killed:
                        deadline = time.monotonic() + KILL_GRACE_S
                elif key.fd in outputs:
                    chunk = os.read(key.fd, 1 << 16)
                    outputs[key.fd].add(chunk)
                    if not chunk:
                        selector.unregister(key.fd)
                    if isinstance(stdout, _Forward) and stdout.stopped and not killed:
                        kill(proc, leaf)
                        killed, deadline = True, time.monotonic() + KILL_GRACE_S
                else:  # stdin
                    assert data is not None and proc.stdin is not None
                    try:
                        sent += os.write(key.fd, data[sent : sent + (1 << 16)])
                    except BrokenPipeError:
                        sent = len(data)
                    if sent >= len(data):
                        selector.unregister(key.fd)
                        proc.stdin.close()
    os.close(pidfd)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait()
    return timed_out, stdout, stderr


SHELLS = {"sh", "bash", "dash"}
ULIMIT_BLOCK_BYTES = {"bash": 1024}  # the unit of `ulimit -f` where it is not 512 bytes


def limits_script(timeout: float, cpus: float, *, shell: str = "sh") -> str:
    """Shell that sets RLIMIT_FSIZE and RLIMIT_CPU (timeout x cpus plus a margin: SIGXCPU,
    then SIGKILL 5 s later), and exits with PRELUDE_FAILED when it cannot. Any user may
    lower its own limits, so it can run as the command's final identity. `shell` is the
    shell that runs it: bash counts `ulimit -f` in 1024-byte blocks, sh (and bash as sh)
    in 512-byte ones."""
    block = ULIMIT_BLOCK_BYTES.get(shell, 512)
    steps = [f"ulimit -f {FILE_SIZE_LIMIT // block}"]
    if math.isfinite(timeout):
        cpu_s = math.ceil(timeout * max(cpus, 1.0)) + CPU_MARGIN_S
        steps += [f"ulimit -S -t {cpu_s}", f"ulimit -H -t {cpu_s + 5}"]
    return " && ".join(steps) + f" || exit {PRELUDE_FAILED}"


def with_limits(cmd: list[str], timeout: float, cpus: float) -> list[str]:
    """`cmd` made to set its rlimits (see limits_script) before it runs anything: a shell's
    `-c` script starts with them (on its first line, so line numbers stay), any other
    command runs behind a `/bin/sh -c` that sets them and execs it."""
    shell = posixpath.basename(cmd[0]) if cmd else ""
    if len(cmd) >= 3 and shell in SHELLS and cmd[1] == "-c":
        return [cmd[0], "-c", f"{limits_script(timeout, cpus, shell=shell)}; {cmd[2]}", *cmd[3:]]
    return ["/bin/sh", "-c", f'{limits_script(timeout, cpus)}; exec "$@"', "sh", *cmd]


def limits_prelude(
    leaf: ExecCgroup | None, timeout: float, cpus: float, *, pwd: str = "/"
) -> list[str]:
    """A `/bin/sh -c` prefix that joins the cgroup `leaf`, sets RLIMIT_FSIZE and RLIMIT_CPU
    (timeout x cpus plus a margin: SIGXCPU, then SIGKILL 5 s later), then execs the command
    that follows it with PWD set to `pwd` (the shell would pass on the host's working folder).
    It exits with PRELUDE_FAILED when a step fails."""
    steps = [f"echo $$ > {shlex.quote(path)}" for path in (leaf.procs_files if leaf else [])]
    steps.append(f"ulimit -f {FILE_SIZE_LIMIT // 512}")  # in 512-byte blocks
    if math.isfinite(timeout):
        cpu_s = math.ceil(timeout * max(cpus, 1.0)) + CPU_MARGIN_S
        steps += [f"ulimit -S -t {cpu_s}", f"ulimit -H -t {cpu_s + 5}"]
    script = " && ".join(steps) + f" || exit {PRELUDE_FAILED}; PWD={shlex.quote(pwd)}"
    script += '; exec "$@"'
    return ["/bin/sh", "-c", script, "sh"]
