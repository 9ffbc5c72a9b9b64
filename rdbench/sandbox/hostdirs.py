"""The host folders rdbench makes for sandboxes and gradings, and their removal.

Every such folder is `/var/tmp/rdbench-<kind>-<owner pid>-<random>` (a sandbox's disk image
sits beside it as the same name plus `.img`, see disk.py), so whatever a dead process left can
be found by name: `remove_dead` removes the folders and images of processes that are gone,
unmounting what is mounted inside first. Removal never recurses in Python (an agent's folder
tree may be thousands of levels deep): mounts go with `umount`, the rest with `rm -rf`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from pathlib import Path

import structlog

log = structlog.get_logger()

STATE_DIR = Path("/var/tmp")
NAME = re.compile(r"rdbench-(?P<kind>[a-z]+)-(?P<pid>[0-9]+)-[^/]+")
REMOVE_TIMEOUT_S = 600.0


def new_name(kind: str, pid: int | None = None) -> str:
    """A fresh folder name for `kind` (letters only) owned by this process (or `pid`)."""
    if not kind.isalpha() or not kind.islower():
        raise ValueError(f"Expected a kind of lowercase letters, got {kind!r}")
    return f"rdbench-{kind}-{os.getpid() if pid is None else pid}-{secrets.token_hex(5)}"


def make_dir(kind: str) -> Path:
    """A new private folder `STATE_DIR/rdbench-<kind>-<pid>-<random>` owned by this process,
    named so that its reaper and `rdbench gc` remove it once this process is gone."""
    path = STATE_DIR / new_name(kind)
    path.mkdir(mode=0o700)
    return path


def owner_pid(path: Path) -> int | None:
    """The pid in an rdbench host folder's (or image's) name; None for other names."""
    match = NAME.fullmatch(path.name)
    return int(match["pid"]) if match else None


def process_alive(pid: int) -> bool:
    """True while process `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mounts_under(path: Path) -> list[Path]:
    """The mount points at or below `path`, deepest first."""
    found: list[Path] = []
    prefix = str(path).rstrip("/")
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as table:
        for line in table:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda mount: len(mount.parts), reverse=True)


def unmount(point: Path) -> None:
    """Detach the filesystem mounted at `point` (lazily: it goes as soon as nothing uses it;
    its loop device, set to autoclear, is freed then)."""
    done = subprocess.run(["umount", "--lazy", str(point)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0 and point in mounts_under(point):
        log.warning("sandbox.unmount_failed", path=str(point), error=done.stderr.strip())


def remove(path: Path) -> None:
    """Remove a host folder or image of rdbench's: unmount what is mounted inside, then
    delete what is left, without recursing in Python."""
    for point in mounts_under(path):
        unmount(point)
    if path.is_dir() and not path.is_symlink():
        done = subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                              capture_output=True, text=True, timeout=REMOVE_TIMEOUT_S,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            log.warning("sandbox.remove_failed", path=str(path), error=done.stderr.strip()[-300:])
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def leftovers(
    *, pid: int | None = None, everything: bool = False, kinds: set[str] | None = None,
    state_dir: Path = STATE_DIR,
) -> list[Path]:  # fmt: skip
    """rdbench's host folders and images in `state_dir` (of `kinds`, default all) whose owner
    is gone (or is `pid`, or any owner with `everything`), folders before images."""
    found = []
    with contextlib.suppress(OSError):
        for path in state_dir.iterdir():
            match = NAME.fullmatch(path.name)
            if match is None or (kinds is not None and match["kind"] not in kinds):
                continue
            owner = int(match["pid"])
            if everything or owner == pid or (pid is None and not process_alive(owner)):
                found.append(path)
    return sorted(found, key=lambda path: (path.suffix == ".img", path.name))


def remove_dead(
    *, pid: int | None = None, everything: bool = False, kinds: set[str] | None = None,
    state_dir: Path = STATE_DIR,
) -> list[str]:  # fmt: skip
    """Remove the host folders and images `leftovers` finds; return their names."""
    removed = []
    for path in leftovers(pid=pid, everything=everything, kinds=kinds, state_dir=state_dir):
        remove(path)
        removed.append(path.name)
        log.info("sandbox.gc", folder=str(path))
    return removed


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (space, tab, newline, backslash) undone."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)
