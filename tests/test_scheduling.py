"""Scheduling by resources: episodes start only while their requests fit the machine."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rdbench.scheduling import (
    RequestTooLarge,
    Resources,
    Scheduler,
    check_requests,
    machine_resources,
)

MACHINE = Resources(cpus=4.0, memory_mb=8192)


def test_requests_that_fit_together_all_start() -> None:
    scheduler = Scheduler(MACHINE, parallel=8)
    assert scheduler.try_acquire(Resources(2.0, 2048))
    assert scheduler.try_acquire(Resources(2.0, 2048))
    assert scheduler.running == 2


def test_a_request_past_the_free_cpus_waits() -> None:
    scheduler = Scheduler(MACHINE, parallel=8)
    assert scheduler.try_acquire(Resources(3.0, 1024))
    assert not scheduler.fits(Resources(2.0, 1024))
    assert scheduler.fits(Resources(1.0, 1024))


def test_a_request_past_the_free_memory_waits() -> None:
    scheduler = Scheduler(MACHINE, parallel=8)
    assert scheduler.try_acquire(Resources(1.0, 6000))
    assert not scheduler.try_acquire(Resources(1.0, 4000))
    assert scheduler.running == 1


def test_parallel_caps_episodes_even_when_resources_are_free() -> None:
    scheduler = Scheduler(MACHINE, parallel=2)
    assert scheduler.try_acquire(Resources(0.5, 100))
    assert scheduler.try_acquire(Resources(0.5, 100))
    assert not scheduler.fits(Resources(0.5, 100))


def test_release_lets_a_waiting_request_start() -> None:
    scheduler = Scheduler(MACHINE, parallel=8)
    first = Resources(4.0, 1024)
    assert scheduler.try_acquire(first)
    started = threading.Event()

    def waiter() -> None:
        if scheduler.acquire(Resources(2.0, 1024), timeout=5):
            started.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not started.wait(0.2)  # no room while the first runs
    scheduler.release(first)
    thread.join(5)
    assert started.is_set()


def test_a_request_larger_than_the_machine_names_the_task_and_both_sizes() -> None:
    with pytest.raises(RequestTooLarge) as caught:
        check_requests({"toy-task": Resources(1.0, 512), "huge-task": Resources(16.0, 512)},
                       MACHINE)
    message = str(caught.value)
    assert "task huge-task asks for 16 CPUs and 512 MiB of memory" in message
    assert "this machine has 4 CPUs and 8192 MiB of memory" in message
    assert "toy-task" not in message


def test_requests_within_the_machine_pass_the_check() -> None:
    check_requests({"a": Resources(4.0, 8192), "b": Resources(0.5, 64)}, MACHINE)


def test_machine_resources_read_the_cgroup_quota_and_memory_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "cpu.max").write_text("150000 100000\n")
    (root / "memory.max").write_text(str(1024 * 2**20) + "\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:  1 kB\n")
    machine = machine_resources(cgroup_root=root, meminfo=meminfo)
    assert machine.memory_mb == 1024
    assert machine.cpus == pytest.approx(min(1.5, len(os.sched_getaffinity(0))))


def test_machine_resources_without_limits_are_the_whole_machine(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2097152 kB\n")
    machine = machine_resources(cgroup_root=tmp_path / "none", meminfo=meminfo)
    assert machine.memory_mb == 2048
    assert machine.cpus == len(os.sched_getaffinity(0))
