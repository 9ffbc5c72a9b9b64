"""How much rdbench adds on top of its sandbox backends.

For each backend it measures, in the same run:
- step: the median latency of `env.step({"tool": "bash", "input": {"command": "true"}})`
  against the raw floor (docker: the SDK's `exec_run(["true"])` on a running container;
  bwrap: one bare `bwrap ... true` call on the same root filesystem);
- reset: the median latency of `env.reset()` (on a fresh env) against the raw floor (docker:
  a container start plus the workspace's archive copy; bwrap: one bare bwrap call plus a
  copy of the workspace into a fresh folder).
and prints the ratios. Targets: step <= 1.2x its floor, reset <= 1.5x its floor.

The two sides are measured alternately, one call each in turn, so that a busy spell of the
machine slows both alike.

    .venv/bin/python bench/sandbox_overhead.py [--backends docker,bwrap] [--steps 60]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from rdbench.env import RDEnv
from rdbench.sandbox.archive import folder_tar
from rdbench.starting_workspace import copy_starting_workspace, starting_workspace
from rdbench.task import TaskSpec, load_task

TOY_TASK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toy-task"
TARGETS = {"step": 1.2, "reset": 1.5}
WARMUP = 3
TRUE_STEP = {"tool": "bash", "input": {"command": "true"}}

Timed = Callable[[], float]  # does one thing, returns the seconds the timed part took


def timed(action: Callable[[], object]) -> Timed:
    """`action` as a Timed: all of it is timed."""

    def run() -> float:
        start = time.perf_counter()
        action()
        return time.perf_counter() - start

    return run


def alternate(ours: Timed, floor: Timed, repeats: int) -> tuple[float, float]:
    """Median seconds of `ours` and of `floor`, run in turn `repeats` times after a warmup."""
    for _ in range(WARMUP):
        ours(), floor()
    pairs = [(ours(), floor()) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


@contextmanager
def stepping_env(task: TaskSpec, backend: str) -> Iterator[Timed]:
    """One bash `true` step through a started RDEnv."""
    env = RDEnv(task, sandbox=backend, budget={"steps": 1_000_000})
    env.reset()
    try:
        yield timed(lambda: env.step(TRUE_STEP))
    finally:
        env.close()


def resetting_env(task: TaskSpec, backend: str) -> Timed:
    """reset() of a fresh RDEnv; closing it is not timed."""

    def run() -> float:
        env = RDEnv(task, sandbox=backend)
        start = time.perf_counter()
        env.reset()
        elapsed = time.perf_counter() - start
        env.close()
        return elapsed

    return run


@contextmanager
def docker_floors(task: TaskSpec) -> Iterator[tuple[Timed, Timed]]:
    """Raw docker SDK floors: exec_run(["true"]), and container start + archive copy."""
    import docker

    from rdbench.image import image_tag

    client = docker.from_env()
    image = image_tag()
    with starting_workspace(task) as folder:
        archive = folder_tar(folder)
    container = client.containers.run(image, ["sleep", "infinity"], detach=True,
                                      network_mode="none")  # fmt: skip

    def start_and_copy() -> float:
        start = time.perf_counter()
        box = client.containers.run(image, ["sleep", "infinity"], detach=True,
                                    network_mode="none")  # fmt: skip
        box.put_archive("/home/agent", archive)
        elapsed = time.perf_counter() - start
        box.remove(force=True)
        return elapsed

    try:
        yield timed(lambda: container.exec_run(["true"])), start_and_copy
    finally:
        container.remove(force=True)


@contextmanager
def bwrap_floors(task: TaskSpec) -> Iterator[tuple[Timed, Timed]]:
    """Raw bubblewrap floors: one bare bwrap call, and that call plus a workspace copy."""
    from rdbench.sandbox.rootfs import ensure_rootfs

    rootfs = str(ensure_rootfs())
    command = ["bwrap", "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev",
               "--unshare-all", "--die-with-parent", "true"]  # fmt: skip

    def start_and_copy() -> float:
        folder = tempfile.mkdtemp(prefix="rdbench-bench-")
        start = time.perf_counter()
        subprocess.run(command, check=True)
        copy_starting_workspace(task, Path(folder))
        elapsed = time.perf_counter() - start
        shutil.rmtree(folder)
        return elapsed

    yield timed(lambda: subprocess.run(command, check=True)), start_and_copy


FLOORS = {"docker": docker_floors, "bwrap": bwrap_floors}


def main() -> None:
    """Measure and print the ratios for each backend."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per side")
    parser.add_argument("--resets", type=int, default=15, help="timed resets per side")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    task = load_task(TOY_TASK)
    print(f"{'backend':8} {'what':6} {'rdbench ms':>11} {'floor ms':>9} {'ratio':>6} target")
    failed = False
    for backend in args.backends.split(","):
        with FLOORS[backend](task) as (floor_step, floor_reset), \
                stepping_env(task, backend) as env_step:  # fmt: skip
            measured = {
                "step": alternate(env_step, floor_step, args.steps),
                "reset": alternate(resetting_env(task, backend), floor_reset, args.resets),
            }
        for what, (ours, floor) in measured.items():
            ratio = ours / floor
            ok = ratio <= TARGETS[what]
            failed |= not ok
            print(f"{backend:8} {what:6} {ours * 1e3:11.1f} {floor * 1e3:9.1f} {ratio:6.2f} "
                  f"<= {TARGETS[what]} {'ok' if ok else 'MISSED'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
