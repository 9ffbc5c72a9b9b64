"""Shared test helpers: the toy task and small task-folder builders."""

from __future__ import annotations

import shutil
from pathlib import Path

TOY_TASK = Path(__file__).parent / "fixtures" / "toy-task"


def copy_toy_task(destination: Path) -> Path:
    """A writable copy of the toy task, in `destination/toy-task`."""
    target = destination / "toy-task"
    shutil.copytree(TOY_TASK, target)
    return target
