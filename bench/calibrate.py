"""Calibration of the shipped tasks: are the anchors right, and is the oracle's score stable?

For each task it grades, in fresh sandboxes on the test split, the untouched workspace (the
start anchor's raw score) and the reference solution laid over it, the latter `--repeats`
times, and prints: start raw, reference raw (median), the anchors in task.toml, and the
oracle's normalized score (median) with its spread (max - min). Target: spread <= 0.1.

    .venv/bin/python bench/calibrate.py [--tasks a,b] [--repeats 5] [--sandbox auto]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
from pathlib import Path

import structlog

from rdbench.grading import default_factory, grade_workspace
from rdbench.task import TaskSpec, discover_tasks

MAX_SPREAD = 0.1


def grade_folder(task: TaskSpec, with_solution: bool, backend: str) -> tuple[float | None, float]:
    """Raw and normalized test score of the workspace, optionally with solution/ over it."""
    with tempfile.TemporaryDirectory(prefix="rdbench-calibrate-") as folder:
        shutil.copytree(task.workspace_dir, folder, dirs_exist_ok=True)
        if with_solution:
            shutil.copytree(task.solution_dir, folder, dirs_exist_ok=True)
        grade = grade_workspace(task, Path(folder), split="test",
                                factory=default_factory(backend))
    if not grade.valid:
        raise SystemExit(f"{task.id}: the {'reference' if with_solution else 'start'} "
                         f"was graded invalid: {grade.message}")
    return grade.raw_score, grade.normalized_score


def main() -> None:
    """Grade and print one line per task."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sandbox", default="auto")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    tasks = discover_tasks()
    chosen = args.tasks.split(",") if args.tasks else sorted(tasks)
    print(f"{'task':26} {'start raw':>10} {'ref raw':>10} {'anchors (start, ref)':>24} "
          f"{'oracle norm':>11} {'spread':>7}")
    failed = False
    for task_id in chosen:
        task = tasks[task_id]
        start_raw, _ = grade_folder(task, False, args.sandbox)
        oracle = [grade_folder(task, True, args.sandbox) for _ in range(args.repeats)]
        raws = [raw for raw, _ in oracle if raw is not None]
        normalized = [score for _, score in oracle]
        spread = max(normalized) - min(normalized)
        failed |= spread > MAX_SPREAD
        anchors = f"({task.scoring.start:.4g}, {task.scoring.reference:.4g})"
        print(f"{task_id:26} {start_raw:10.4f} {statistics.median(raws):10.4f} {anchors:>24} "
              f"{statistics.median(normalized):11.3f} {spread:7.3f}"
              f"{'' if spread <= MAX_SPREAD else '  SPREAD TOO LARGE'}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
