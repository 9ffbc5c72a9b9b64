"""Resource limits for the bwrap backend: a cgroup (v1) per sandbox, a leaf per command.

For each of the memory, pids and cpu controllers a sandbox gets
`/sys/fs/cgroup/<controller>/rdbench/<sandbox id>/`, which holds its limits (memory and
memory+swap, number of processes, CPU quota). The process that holds the sandbox's namespaces
lives in the leaf `init`, and each command in a leaf `exec-<n>`, so the limits are shared by
everything the sandbox runs, while a timeout kills exactly one command's processes and an
out-of-memory kill is counted where it happened. A leaf is reused by a later command once the
processes of its last one are all gone (making and removing groups costs more than a command).

The sandbox's group of the cpuacct controller (ACCOUNTING) counts the CPU time of every process
the sandbox ever ran, however it ended, as a Docker container's group does; the sandbox shows
it read-only inside (see bwrap.py), where a grader's CpuCounter reads it. Where cpu and cpuacct
are mounted together that is the cpu group; where cpuacct is not mounted the sandbox runs
without it (with a warning).

Making groups needs root and cgroup v1 controllers mounted at /sys/fs/cgroup (not the unified
v2 hierarchy); without them `SandboxCgroups.create` logs a warning and returns None, and the
sandbox runs without these limits.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger()

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
ACCOUNTING = "cpuacct"  # counts CPU time; optional, and part of the cpu group where co-mounted
PARENT = "rdbench"
CFS_PERIOD_US = 100_000
KILL_DEADLINE_S = 5.0


class ExecCgroup:
    """The leaf groups (one per controller) that hold the processes of one command."""

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs
        self._procs_files = [os.fsencode(path / "cgroup.procs") for path in dirs.values()]
        self._oom_kills_seen = 0

    @property
    def procs_files(self) -> list[str]:
        """The `cgroup.procs` file of each group: a process writing its pid there joins."""
        return [os.fsdecode(path) for path in self._procs_files]

    def pids(self) -> set[int]:
        """The processes in the groups now (never rdbench's own, whose launcher thread passes
        through them; see `holding_this_thread`)."""
        found: set[int] = set()
        for path in self._procs_files:
            with contextlib.suppress(OSError):
                found.update(int(line) for line in Path(os.fsdecode(path)).read_text().split())
        found.discard(os.getpid())
        return found

    @contextmanager
    def holding_this_thread(self) -> Iterator[None]:
        """Move the calling thread into the groups and, on leaving, back to where it was.

        In cgroup v1 each thread has its own groups (its id written to `tasks`), and a new
        process starts in the groups of the thread that made it: a command started meanwhile
        is under the groups' limits from its first instruction, before it can fork. Only for a
        thread that is not the process's main one (the kernel's out-of-memory killer then
        never picks rdbench for being in the group)."""
        tid = str(threading.get_native_id()).encode()
        home = _thread_groups()
        joined: list[str] = []
        try:
            for controller, path in self.dirs.items():
                _write_tasks(path, tid)
                joined.append(controller)
            yield
        finally:
            for controller in joined:
                # the leaf is <root>/<controller>/rdbench/<sandbox>/<leaf>
                _write_tasks(self.dirs[controller].parents[2] / home[controller], tid)

    def kill(self, deadline_s: float = KILL_DEADLINE_S) -> bool:
        """SIGKILL every process in the groups until none is left (new ones may appear while
        a fork bomb runs); True when they are empty."""
        end = time.monotonic() + deadline_s
        while True:
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > end:
                log.warning("sandbox.cgroup.kill_incomplete", left=len(pids))
                return False
            time.sleep(0.01)

    def is_empty(self) -> bool:
        """True when no process is left in the groups (each holds the same processes: every
        process joins all of them at once)."""
        try:
            with open(self._procs_files[0], "rb") as procs:
                return not procs.read(1)
        except OSError:
            return True

    def new_oom_kills(self) -> int:
        """How many processes the kernel killed in this group for want of memory since the
        last call."""
        seen, self._oom_kills_seen = self._oom_kills_seen, self._oom_kills()
        return self._oom_kills_seen - seen

    def _oom_kills(self) -> int:
        path = self.dirs.get("memory")
        if path is None:
            return 0
        with contextlib.suppress(OSError):
            for line in (path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Kill what is left and remove the groups."""
        self.kill()
        for path in self.dirs.values():
            _rmdir(path)


class SandboxCgroups:
    """The groups of one sandbox, holding its limits; commands run in leaves below them."""

    def __init__(
        self, name: str, *, memory_mb: int, pids: int, cpus: float, root: Path = CGROUP_ROOT
    ):
        self.name = name
        self.memory_mb = memory_mb
        accounting = _accounting_controller(root)
        controllers = CONTROLLERS + ((ACCOUNTING,) if accounting == ACCOUNTING else ())
        self.dirs = {controller: root / controller / PARENT / name for controller in controllers}
        # the group whose cpuacct.usage counts the CPU time of every process of the sandbox
        self._accounting = self.dirs[accounting] if accounting else None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._idle: list[ExecCgroup] = []  # leaves whose command is over
        try:
            for path in self.dirs.values():
                path.mkdir(parents=True)
            memory = self.dirs["memory"]
            _write(memory / "memory.limit_in_bytes", memory_mb * 1024 * 1024)
            if (memory / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                _write(memory / "memory.memsw.limit_in_bytes", memory_mb * 1024 * 1024)
            _write(self.dirs["pids"] / "pids.max", pids)
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", max(int(cpus * CFS_PERIOD_US), 1000))
        except OSError:
            self.remove()
            raise

    @classmethod
    def create(
        cls, name: str, *, memory_mb: int, pids: int, cpus: float, root: Path = CGROUP_ROOT
    ) -> SandboxCgroups | None:
        """The groups for sandbox `name`, or None (with a warning) where none can be made."""
        missing = [c for c in CONTROLLERS if not (root / c / "cgroup.procs").exists()]
        if missing:
            reason = f"no cgroup v1 {', '.join(missing)} controller mounted under {root}"
        else:
            try:
                return cls(name, memory_mb=memory_mb, pids=pids, cpus=cpus, root=root)
            except OSError as error:
                reason = f"cannot make cgroups under {root} ({error}); run as root"
        log.warning("sandbox.bwrap.no_cgroups", reason=reason,
                    consequence="no memory, process or CPU limits")  # fmt: skip
        return None

    @property
    def accounting(self) -> Path | None:
        """The sandbox's group whose `cpuacct.usage` counts the CPU time of all its processes
        (the parent of its leaves), or None where no cpuacct controller is mounted."""
        return self._accounting

    def init_group(self) -> ExecCgroup:
        """The leaf of the process that holds the sandbox's namespaces."""
        return self._make_leaf("init")

    def exec_group(self) -> ExecCgroup:
        """An empty leaf for one command: an idle one whose processes are all gone, or a new
        one; its `new_oom_kills()` counts from now. Give it back with `release` when the
        command is over."""
        with self._lock:
            for leaf in self._idle:
                if leaf.is_empty():
                    self._idle.remove(leaf)
                    leaf.new_oom_kills()  # from here on, they are the next command's
                    return leaf
        return self._make_leaf(f"exec-{next(self._counter)}")

    def release(self, leaf: ExecCgroup) -> None:
        """Take back a command's leaf; a later command reuses it once it is empty (a
        background process the command left keeps it busy)."""
        with self._lock:
            self._idle.append(leaf)

    def _make_leaf(self, name: str) -> ExecCgroup:
        dirs = {controller: path / name for controller, path in self.dirs.items()}
        for path in dirs.values():
            path.mkdir()
        return ExecCgroup(dirs)

    def remove(self) -> None:
        """Kill every process of the sandbox and remove its groups."""
        with self._lock:
            self._idle.clear()
        for controller, path in self.dirs.items():
            if path.is_dir():
                for child in path.iterdir():  # leaves whose command was never released
                    if child.is_dir():
                        ExecCgroup({controller: child}).remove()
                _rmdir(path)


def remove_leftover_groups(
    leftover: Callable[[str], bool], root: Path = CGROUP_ROOT
) -> list[str]:
    """Remove the groups of the sandboxes whose name `leftover` accepts; return the names."""
    removed: set[str] = set()
    for controller in (*CONTROLLERS, ACCOUNTING):
        parent = root / controller / PARENT
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if path.is_dir() and leftover(path.name):
                for child in path.iterdir():
                    if child.is_dir():
                        ExecCgroup({controller: child}).remove()
                _rmdir(path)
                removed.add(path.name)
    return sorted(removed)


def _accounting_controller(root: Path) -> str | None:
    """Where the CPU-time counter is under `root`: "cpu" where cpuacct is mounted with cpu,
    ACCOUNTING where it is mounted alone, None (with a warning) where it is not mounted."""
    if (root / "cpu" / "cpuacct.usage").exists():
        return "cpu"
    if (root / ACCOUNTING / "cpuacct.usage").exists():
        return ACCOUNTING
    log.warning("sandbox.bwrap.no_cpu_accounting",
                reason=f"no cgroup v1 cpuacct controller mounted under {root}",
                consequence="graders inside see no CPU counter of the sandbox")  # fmt: skip
    return None


def _thread_groups() -> dict[str, str]:
    """Controller -> the calling thread's group, as a path relative to the hierarchy's root."""
    groups: dict[str, str] = {}
    with open("/proc/thread-self/cgroup", encoding="utf-8") as table:
        for line in table:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                groups[controller] = path.lstrip("/")
    return groups


def _write_tasks(group: Path, tid: bytes) -> None:
    with open(group / "tasks", "wb", buffering=0) as tasks:
        tasks.write(tid)


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                log.warning("sandbox.cgroup.remove_failed", path=str(path), error=str(error))
                return
            time.sleep(0.02)  # the last processes are still exiting
    log.warning("sandbox.cgroup.busy", path=str(path))
