"""Shared test helpers: the toy task, small task-folder builders, and what a task's own tests
need (its grader's modules imported by path, its [scoring] table, a cached grader)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rdbench.task import Scoring, load_task

# Both sandbox backends, each marked with what it needs (see conftest.py).
BACKENDS = [
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("bwrap", marks=pytest.mark.bwrap),
]
TOY_TASK = Path(__file__).parent / "fixtures" / "toy-task"


def load_module(path: Path, name: str) -> ModuleType:
    """The Python file `path` imported as the module `name`, registered in sys.modules (the
    dataclasses it defines look their module up there while it executes)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def task_scoring(task: Path) -> Scoring:
    """The [scoring] table of the task folder `task`, as the framework reads it."""
    return load_task(task).scoring


def copy_toy_task(destination: Path) -> Path:
    """A writable copy of the toy task, in `destination/toy-task`."""
    target = destination / "toy-task"
    shutil.copytree(TOY_TASK, target)
    return target


REPO = Path(__file__).resolve().parents[1]
Verdict = dict[str, Any]


class WorkspaceGrader:
    """Grades a task's workspace with files laid over it, the way every episode is graded: in
    a fresh sandbox with the real grader. Verdicts are cached by the task, the backend and
    their arguments for the whole session: the generic suite (test_tasks_generic.py) and a
    task's own tests share the gradings of its start and reference."""

    _verdicts: dict[tuple[Any, ...], Verdict] = {}  # noqa: RUF012 (shared on purpose)

    def __init__(self, task_dir: Path, scratch: Path, backend: str = "docker"):
        from rdbench.task import load_task

        self.task = load_task(task_dir)
        self.scratch = scratch
        self.backend = backend
        self._cache = self._verdicts

    def __call__(
        self,
        split: str = "test",
        solution: bool = False,
        files: dict[str, str | bytes] | None = None,
    ) -> Verdict:
        """The grader's verdict (Grade.to_dict()) on workspace [+ solution] [+ files]."""
        from rdbench.grading import default_factory, grade_workspace
        from rdbench.starting_workspace import copy_starting_workspace

        key = (self.task.root, self.backend, split, solution,
               tuple(sorted((files or {}).items())))
        if key not in self._cache:
            workspace = Path(tempfile.mkdtemp(dir=self.scratch))
            copy_starting_workspace(self.task, workspace, solution=solution)
            for name, content in (files or {}).items():
                path = workspace / name
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8")
            grade = grade_workspace(
                self.task, workspace, split=split,  # type: ignore[arg-type]
                factory=default_factory(self.backend),
            )
            self._cache[key] = grade.to_dict()
        return self._cache[key]


def toy_task_as(destination: Path, task_id: str, *, cpus: float | None = None) -> Path:
    """A copy of the toy task named `task_id` (in `destination/task_id`), optionally asking
    for `cpus` CPUs: several distinct, quick tasks for suite runs."""
    import re

    target = destination / task_id
    shutil.copytree(TOY_TASK, target)
    toml = target / "task.toml"
    text = toml.read_text(encoding="utf-8").replace('id = "toy-task"', f'id = "{task_id}"')
    if cpus is not None:
        text = re.sub(r"(?m)^cpus = .*$", f"cpus = {cpus}", text)
    toml.write_text(text, encoding="utf-8")
    return target
