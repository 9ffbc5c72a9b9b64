"""Where the files shipped with rdbench live: next to the package when installed as a wheel,
at the repository root in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """The shipped file or folder `name` (e.g. "Dockerfile", "environments")."""
    packaged = _PACKAGE / "_data" / name
    if packaged.exists():
        return packaged
    return _PACKAGE.parent / name


def environments_dir() -> Path:
    """The folder holding one sub-folder per shipped task."""
    return resource_path("environments")
