"""pytest: the tasks' own tests (environments/<id>/tests/) get the fixtures of tests/conftest.py
(sandbox_image, bwrap_rootfs, the `docker` / `bwrap` markers' checks) and tests/helpers.py.
Not part of a task, and left out of the wheel (pyproject.toml)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import task_fixtures

# every fixture and hook, the autouse ones (named _...) too
globals().update({name: value for name, value in vars(task_fixtures).items()
                  if not name.startswith("__")})
