"""Scheduling by resources: which episodes may run at once on this machine.

Each episode asks for its task's sandbox CPUs and memory (task.toml [sandbox] cpus,
memory_mb). Episodes start only while the running ones' requests, plus the new one's, fit
the machine (its CPUs from the affinity mask and the cgroup quota, its memory from
/proc/meminfo and the cgroup limit) and no more than `parallel` run at once. A request larger
than the whole machine could never start: `check_requests` says so before anything runs.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Resources:
    """CPUs and memory: what an episode asks for, or what a machine has."""

    cpus: float
    memory_mb: int

    def __str__(self) -> str:
        return f"{self.cpus:g} CPUs and {self.memory_mb} MiB of memory"


class RequestTooLarge(ValueError):
    """An episode asks for more than the machine has; it could never start."""


def machine_resources(cgroup_root: Path = CGROUP_ROOT, meminfo: Path = MEMINFO) -> Resources:
    """What this machine gives rdbench: the CPUs it may run on (affinity, then the cgroup's
    CPU quota) and its memory (MemTotal, then the cgroup's memory limit)."""
    cpus = float(len(os.sched_getaffinity(0)))
    quota = _cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, quota)
    memory_mb = _mem_total_mb(meminfo)
    limit = _memory_limit_mb(cgroup_root)
    if limit is not None:
        memory_mb = min(memory_mb, limit)
    return Resources(cpus=cpus, memory_mb=memory_mb)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup(root: Path, controller: str) -> Path | None:
    """This process's cgroup folder for a v1 `controller`, or in the v2 tree for ""; the
    mount's top when the path is not visible (inside a container, the top is its own)."""
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller == "" and controllers == "":
            base = root if (root / "cgroup.controllers").exists() else root / "unified"
        elif controller != "" and controller in controllers.split(","):
            base = root / controller
        else:
            continue
        folder = base / path.lstrip("/")
        return folder if folder.is_dir() else base
    return None


def _cpu_quota(root: Path) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (v2 cpu.max or v1 cfs_quota), or None."""
    v2 = _own_cgroup(root, "")
    value = _read(v2 / "cpu.max") if v2 is not None else None
    if value is not None:
        quota, _, period = value.partition(" ")
        if quota != "max" and period.isdigit() and int(period) > 0:
            return int(quota) / int(period)
        return None
    v1 = _own_cgroup(root, "cpu")
    if v1 is None:
        return None
    quota_text = _read(v1 / "cpu.cfs_quota_us")
    period_text = _read(v1 / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    quota_us, period_us = int(quota_text), int(period_text)
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _memory_limit_mb(root: Path) -> int | None:
    """The memory limit of this process's cgroup in MiB (v2 memory.max, v1 limit_in_bytes)."""
    v2 = _own_cgroup(root, "")
    value = _read(v2 / "memory.max") if v2 is not None else None
    if value is None:
        v1 = _own_cgroup(root, "memory")
        value = _read(v1 / "memory.limit_in_bytes") if v1 is not None else None
    if value is None or not value.isdigit():
        return None
    limit = int(value) // 2**20
    return limit if limit < 2**42 else None  # v1's "no limit" is a huge number


def _mem_total_mb(meminfo: Path) -> int:
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{meminfo} holds no MemTotal line; cannot tell this machine's memory")


def check_requests(requests: Mapping[str, Resources], machine: Resources) -> None:
    """RequestTooLarge naming every task (key of `requests`) that asks for more than the
    machine has: such an episode could never start."""
    too_large = [
        f"task {name} asks for {request} per episode (task.toml [sandbox] cpus, memory_mb)"
        for name, request in requests.items()
        if request.cpus > machine.cpus + 1e-9 or request.memory_mb > machine.memory_mb
    ]
    if too_large:
        raise RequestTooLarge(
            "; ".join(too_large) + f", but this machine has {machine}. Lower the task's "
            "[sandbox] request, or run on a larger machine (--executor ray)"
        )


class Scheduler:
    """Hands out the machine's resources to episodes: `fits` says whether one more may start,
    `acquire`/`release` book and free its request. Thread-safe."""

    def __init__(self, machine: Resources, parallel: int):
        if parallel < 1:
            raise ValueError(f"Expected parallel >= 1, got {parallel}")
        self.machine = machine
        self.parallel = parallel
        self._cpus = 0.0
        self._memory_mb = 0
        self._running = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        """Episodes holding resources now."""
        return self._running

    def fits(self, request: Resources) -> bool:
        """True if an episode asking `request` may start now."""
        with self._changed:
            return self._fits(request)

    def _fits(self, request: Resources) -> bool:
        if self._running >= self.parallel:
            return False
        if self._running == 0:
            return True  # alone, anything that passed check_requests fits
        return (
            self._cpus + request.cpus <= self.machine.cpus + 1e-9
            and self._memory_mb + request.memory_mb <= self.machine.memory_mb
        )

    def try_acquire(self, request: Resources) -> bool:
        """Book `request` if it fits now; return whether it was booked."""
        with self._changed:
            if not self._fits(request):
                return False
            self._book(request)
            return True

    def acquire(self, request: Resources, timeout: float | None = None) -> bool:
        """Wait until `request` fits, then book it; False if `timeout` passed first."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._fits(request), timeout=timeout):
                return False
            self._book(request)
            return True

    def _book(self, request: Resources) -> None:
        self._cpus += request.cpus
        self._memory_mb += request.memory_mb
        self._running += 1

    def release(self, request: Resources) -> None:
        """Free what `acquire` booked for one episode."""
        with self._changed:
            self._cpus = max(0.0, self._cpus - request.cpus)
            self._memory_mb = max(0, self._memory_mb - request.memory_mb)
            self._running -= 1
            self._changed.notify_all()

    def wait_for_change(self, timeout: float | None = None) -> None:
        """Block until some episode releases its resources (or `timeout` passes)."""
        with self._changed:
            self._changed.wait(timeout=timeout)


def request_of(cpus: float, memory_mb: int) -> Resources:
    """The request of an episode whose sandbox has these limits."""
    if not (math.isfinite(cpus) and cpus > 0) or memory_mb <= 0:
        raise ValueError(f"Expected a positive request, got {cpus} CPUs, {memory_mb} MiB")
    return Resources(cpus=cpus, memory_mb=memory_mb)
