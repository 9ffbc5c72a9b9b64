"""Calibration of the shipped tasks: are the anchors right, and is the oracle's score stable?

For each task it grades, in fresh sandboxes on the test split, the untouched workspace (the
start anchor's raw score) and the reference solution laid over it, the latter `--repeats`
times, and prints: start raw, reference raw (median), the anchors in task.toml, and the
oracle's normalized score (median) with its spread (max - min). Targets: spread <= 0.1, oracle
>= 0.9, start normalized 0 within 0.05 (the exit status is 1 when a task misses one).
With `--load N`, N busy loops (`while True: pass`, one process each) run beside the gradings
for their whole duration: the timing tasks' spread must hold on a loaded machine too. The
header says the load and the machine's load average when the gradings began.

    .venv/bin/python bench/calibrate.py [--tasks a,b] [--repeats 5] [--sandbox auto] [--load 2]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import structlog

from rdbench.grading import default_factory, grade_workspace
from rdbench.starting_workspace import copy_starting_workspace
from rdbench.task import TaskSpec, discover_tasks

MAX_SPREAD = 0.1
MIN_ORACLE = 0.9
"""The reference's median normalized score must reach this."""
MAX_START = 0.05
"""The start's normalized score must be 0 up to this much (the timing tasks time the start
against itself, so it scores 0 plus noise)."""


def grade_folder(task: TaskSpec, with_solution: bool, backend: str) -> tuple[float | None, float]:
    """Raw and normalized test score of the workspace, optionally with solution/ over it."""
    with tempfile.TemporaryDirectory(prefix="rdbench-calibrate-") as folder:
        copy_starting_workspace(task, Path(folder))
        if with_solution:
            shutil.copytree(task.solution_dir, folder, dirs_exist_ok=True)
        grade = grade_workspace(task, Path(folder), split="test",
                                factory=default_factory(backend))
    if not grade.valid:
        raise SystemExit(f"{task.id}: the {'reference' if with_solution else 'start'} "
                         f"was graded invalid: {grade.message}")
    return grade.raw_score, grade.normalized_score


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` busy-loop processes for as long as the block runs."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> None:
    """Grade and print one line per task."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--load", type=int, default=0,
                        help="busy loops beside the gradings (default 0)")
    args = parser.parse_args()
    if args.load < 0:
        parser.error(f"--load must be 0 or more busy loops, got {args.load}")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tasks = discover_tasks()
    chosen = args.tasks.split(",") if args.tasks else sorted(tasks)
    averages = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load: {args.load} busy loop(s) beside the gradings; load average at the start "
          f"(1, 5, 15 min): {averages}; {os.cpu_count()} CPUs")
    print(f"{'task':26} {'start raw':>10} {'start norm':>10} {'ref raw':>10} "
          f"{'anchors (start, ref)':>24} {'oracle norm':>11} {'spread':>7}")
    failed = False
    for task_id in chosen:
        task = tasks[task_id]
        with busy_loops(args.load):
            start_raw, start_normalized = grade_folder(task, False, args.sandbox)
            oracle = [grade_folder(task, True, args.sandbox) for _ in range(args.repeats)]
        raws = [raw for raw, _ in oracle if raw is not None]
        normalized = [score for _, score in oracle]
        spread = max(normalized) - min(normalized)
        problems = [problem for problem, found in (
            ("SPREAD TOO LARGE", spread > MAX_SPREAD),
            (f"ORACLE BELOW {MIN_ORACLE}", statistics.median(normalized) < MIN_ORACLE),
            ("START NOT 0", abs(start_normalized) > MAX_START),
        ) if found]
        failed |= bool(problems)
        anchors = f"({task.scoring.start:.4g}, {task.scoring.reference:.4g})"
        print(f"{task_id:26} {start_raw:10.4f} {start_normalized:10.3f} "
              f"{statistics.median(raws):10.4f} {anchors:>24} "
              f"{statistics.median(normalized):11.3f} {spread:7.3f}"
              f"  [{' '.join(f'{score:.3f}' for score in normalized)}]"
              + "".join(f"  {problem}" for problem in problems))
    averages = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {averages}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
