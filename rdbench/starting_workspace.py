"""The starting workspace of a task, laid out on the host: workspace/ with the grader's files
that task.toml's `[workspace] from_grader` declares copied over it. Every place that starts
from the untouched workspace (an episode's reset, calibration, grading the start anchor) lays
it out through here, so that the declared files are never missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rdbench.sandbox import hostdirs
from rdbench.task import TaskSpec


def copy_starting_workspace(task: TaskSpec, dest: Path, *, solution: bool = False) -> Path:
    """Lay `task`'s starting workspace into the host folder `dest` (made if missing; what it
    holds already stays unless a starting file replaces it), with the reference solution/ laid
    over it for `solution`; returns `dest`."""
    if task.workspace_dir.is_dir():
        shutil.copytree(task.workspace_dir, dest, dirs_exist_ok=True)
    dest.mkdir(parents=True, exist_ok=True)
    for target, source in task.from_grader.items():
        path = dest / target
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        shutil.copymode(source, path)
    if solution:
        shutil.copytree(task.solution_dir, dest, dirs_exist_ok=True)
    return dest


@contextmanager
def starting_workspace(task: TaskSpec) -> Iterator[Path]:
    """A host folder holding `task`'s starting workspace, for as long as the block runs: the
    task's own workspace/ when it declares no grader files (nothing is copied), else a private
    copy removed afterwards (named so that `rdbench gc` removes it if this process dies)."""
    if not task.from_grader:
        yield task.workspace_dir
        return
    folder = hostdirs.make_dir("start")
    try:
        copy_starting_workspace(task, folder)
        yield folder
    finally:
        hostdirs.remove(folder)
