"""Wheel build hook: ship every task folder of environments/ as rdbench/_data/environments/,
without what only the repository needs (a task's own tests/, environments/conftest.py) or
bytecode caches. A plain force-include would take the whole folder: it ignores excludes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class TaskFoldersHook(BuildHookInterface):  # type: ignore[misc]
    """Adds environments/<id>/... (but tests/) to the wheel."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Force-include each shipped file of each task folder."""
        if self.target_name != "wheel":
            return
        environments = Path(self.root) / "environments"
        for path in sorted(environments.rglob("*")):
            parts = path.relative_to(environments).parts
            if (not path.is_file() or len(parts) < 2 or parts[1] == "tests"
                    or "__pycache__" in parts or path.suffix == ".pyc"):
                continue
            target = "rdbench/_data/environments/" + "/".join(parts)
            build_data["force_include"][str(path)] = target
