"""How much rdbench adds on top of its sandbox backends.

For each backend it measures, in the same run:
- step: the median latency of `env.step({"tool": "bash", "input": {"command": "true"}})`
  against the raw floor (docker: the SDK's `exec_run(["true"])` on a running container;
  bwrap: one bare `bwrap ... true` call on the same root filesystem);
- reset: the median latency of `env.reset()` (on a fresh env) against the raw floor (docker:
  a container start plus the workspace's archive copy; bwrap: one bare bwrap call plus a
  copy of the workspace into a fresh folder).
and prints the ratios. Targets: step <= 1.2x its floor, reset <= 1.5x its floor.

    .venv/bin/python bench/sandbox_overhead.py [--backends docker,bwrap] [--steps 40]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from rdbench.env import RDEnv
from rdbench.sandbox.archive import folder_tar
from rdbench.task import TaskSpec, load_task

TOY_TASK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toy-task"
TARGETS = {"step": 1.2, "reset": 1.5}


def median_s(action: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `action` over `repeats` runs, after `warmup` untimed ones."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def env_step_s(task: TaskSpec, backend: str, repeats: int) -> float:
    """Median latency of one bash `true` step through RDEnv."""
    env = RDEnv(task, sandbox=backend, budget={"steps": 100_000})
    env.reset()
    try:
        return median_s(lambda: env.step({"tool": "bash", "input": {"command": "true"}}), repeats)
    finally:
        env.close()


def env_reset_s(task: TaskSpec, backend: str, repeats: int) -> float:
    """Median latency of reset() on a fresh env (closing it is not timed)."""
    times = []
    for _ in range(repeats + 1):
        env = RDEnv(task, sandbox=backend)
        start = time.perf_counter()
        env.reset()
        times.append(time.perf_counter() - start)
        env.close()
    return statistics.median(times[1:])


def docker_floors(task: TaskSpec, repeats: int, steps: int) -> tuple[float, float]:
    """Raw docker SDK floors: exec_run(["true"]), and container start + archive copy."""
    import docker

    from rdbench.image import image_tag

    client = docker.from_env()
    image = image_tag()
    archive = folder_tar(task.workspace_dir)
    container = client.containers.run(image, ["sleep", "infinity"], detach=True,
                                      network_mode="none")
    try:
        step = median_s(lambda: container.exec_run(["true"]), steps)
    finally:
        container.remove(force=True)

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        box = client.containers.run(image, ["sleep", "infinity"], detach=True,
                                    network_mode="none")
        box.put_archive("/home/agent", archive)
        times.append(time.perf_counter() - start)
        box.remove(force=True)
    return step, statistics.median(times[1:])


def bwrap_floors(task: TaskSpec, repeats: int, steps: int) -> tuple[float, float]:
    """Raw bubblewrap floors: one bare bwrap call, and that call plus a workspace copy."""
    from rdbench.sandbox.rootfs import ensure_rootfs

    rootfs = str(ensure_rootfs())
    command = ["bwrap", "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev",
               "--unshare-all", "--die-with-parent", "true"]
    step = median_s(lambda: subprocess.run(command, check=True), steps)

    def start_and_copy() -> None:
        folder = tempfile.mkdtemp(prefix="rdbench-bench-")
        subprocess.run(command, check=True)
        shutil.copytree(task.workspace_dir, folder, dirs_exist_ok=True)
        shutil.rmtree(folder)

    return step, median_s(start_and_copy, repeats)


FLOORS = {"docker": docker_floors, "bwrap": bwrap_floors}


def main() -> None:
    """Measure and print the ratios for each backend."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--resets", type=int, default=8, help="timed resets per measurement")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    task = load_task(TOY_TASK)
    print(f"{'backend':8} {'what':6} {'rdbench ms':>11} {'floor ms':>9} {'ratio':>6} target")
    failed = False
    for backend in args.backends.split(","):
        floor_step, floor_reset = FLOORS[backend](task, args.resets, args.steps)
        measured = {
            "step": (env_step_s(task, backend, args.steps), floor_step),
            "reset": (env_reset_s(task, backend, args.resets), floor_reset),
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
