"""A sandbox's disk: a size-limited filesystem holding every place the sandbox may write.

A `SandboxDisk` is a sparse image file of `size_mb` (`<folder>.img`), formatted ext4 (no
blocks reserved for root, lazy initialization) and loop-mounted
nosuid,nodev at `<folder>` (mode 700, root's). The backends bind its subfolders at the agent's
home, /tmp, /var/tmp and /grader, so whatever a sandbox writes costs the host at most
`size_mb` of disk (the image grows only with what is written), and a full disk is the
sandbox's problem alone. `remove()` unmounts it and deletes the image; a dead process's disks
are removed by the reaper or `rdbench gc` (see hostdirs.py).

Formatting costs more than the rest of a reset (about 15 ms for 2 GiB), so a process formats
one template image per size, once, and each disk starts as a sparse copy of it (its data
extents only, about 1 MB). The templates sit beside the disks
(`rdbench-bwrap-<pid>-template-<size>.img`, removed at exit, or by the reaper once the
process is gone).

Mounting still costs more than the rest of a reset, so `ready_disk` hands out a disk mounted
ahead of time, in the background, after the previous one was taken (one kept ready per size;
named as a sandbox's folder of this process, so the reaper and `rdbench gc` remove it like
any other, and removed at exit).

Making one needs root, mkfs.ext4 (e2fsprogs) and loop devices.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from rdbench.sandbox import hostdirs
from rdbench.sandbox.base import AGENT_UID, SandboxUnavailable

log = structlog.get_logger()

FULL_BELOW_BYTES = 1024 * 1024  # a disk with less room than this counts as full
SETUP_TIMEOUT_S = 60.0
POOL_SIZE = 1  # disks kept mounted ahead, per folder and size
_pool: dict[tuple[Path, int], list[SandboxDisk]] = {}  # (folder, size_mb) -> ready disks
_pool_pending: dict[tuple[Path, int], int] = {}  # (folder, size_mb) -> disks being made
_pool_maker: ThreadPoolExecutor | None = None
_templates: dict[tuple[Path, int], Path] = {}  # (folder, size_mb) -> formatted image
_templates_lock = threading.Lock()
LOOP_HINT = (
    "loop devices are needed for the sandbox's size-limited disk: load the module "
    "(`modprobe loop`), and in a container give it /dev/loop-control and /dev/loop* "
    "(e.g. `docker run --privileged`)"
)


def disk_problem() -> str | None:
    """Why a sandbox disk cannot be made here (and how to fix it), or None when it can."""
    if os.geteuid() != 0:
        return "a size-limited sandbox disk needs root (to mount it); run rdbench as root"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is missing; install e2fsprogs (`apt-get install e2fsprogs`)"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount is missing; install mount (`apt-get install mount`)"
    if not Path("/dev/loop-control").exists():
        return LOOP_HINT
    return None


class SandboxDisk:
    """An ext4 image of `size_mb` mounted at `folder` (which it makes); `remove()` undoes it."""

    def __init__(self, folder: Path, size_mb: int):
        if size_mb < 16:
            raise ValueError(f"Expected a sandbox disk of at least 16 MB, got {size_mb}")
        problem = disk_problem()
        if problem is not None:
            raise SandboxUnavailable(f"Cannot make the sandbox's disk: {problem}")
        self.folder = folder
        self.image = folder.with_name(folder.name + ".img")
        self.size_mb = size_mb
        try:
            _copy_sparse(_template(folder.parent, size_mb), self.image)
            folder.mkdir(mode=0o700)
            _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(self.image), str(folder)],
                 "mounting the sandbox's disk", hint=LOOP_HINT)  # fmt: skip
            folder.chmod(0o700)
            (folder / "lost+found").rmdir()
        except BaseException:
            self.remove()
            raise
        log.debug("sandbox.disk", folder=str(folder), size_mb=size_mb)

    def make_folders(self, *, grader: bool = True) -> None:
        """Make the writable places at the disk's top: `home` (the agent's, empty), `tmp` and
        `var-tmp` (sticky, anyone's) and, with `grader`, the root-only `grader`."""
        home = self.folder / "home"
        home.mkdir(mode=0o755)
        os.chown(home, AGENT_UID, AGENT_UID)
        for name in ("tmp", "var-tmp"):
            (self.folder / name).mkdir()
            (self.folder / name).chmod(0o1777)
        if grader:
            (self.folder / "grader").mkdir(mode=0o700)

    def full(self) -> bool:
        """True when the disk has (next to) no room left, in bytes or in files."""
        try:
            stat = os.statvfs(self.folder)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < FULL_BELOW_BYTES or (
            stat.f_files > 0 and stat.f_favail == 0
        )

    def remove(self) -> None:
        """Unmount the disk and delete its folder and image; safe to repeat."""
        hostdirs.remove(self.folder)
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()


def ready_disk(parent: Path, size_mb: int) -> SandboxDisk:
    """A new disk of `size_mb` mounted at a fresh folder `parent/rdbench-bwrap-<pid>-<random>`:
    one mounted ahead when there is one, else one made now; either way the next is then made
    in the background."""
    key = (parent, size_mb)
    with _templates_lock:
        ready = _pool.setdefault(key, [])
        disk = ready.pop() if ready else None
        if len(ready) + _pool_pending.get(key, 0) < POOL_SIZE:
            _pool_pending[key] = _pool_pending.get(key, 0) + 1
            _maker().submit(_make_ahead, key)
    if disk is None or not disk.folder.is_mount():
        disk = SandboxDisk(parent / hostdirs.new_name("bwrap"), size_mb)
    return disk


def _maker() -> ThreadPoolExecutor:
    global _pool_maker
    if _pool_maker is None:
        _pool_maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdbench-disks")
        atexit.register(_remove_pool)
    return _pool_maker


def _make_ahead(key: tuple[Path, int]) -> None:
    """Make one disk for the pool (in the background thread); a failure is left for the
    caller who would have taken it to meet again, and report."""
    parent, size_mb = key
    try:
        disk = SandboxDisk(parent / hostdirs.new_name("bwrap"), size_mb)
    except Exception as error:  # the next ready_disk makes one itself, and reports
        log.debug("sandbox.disk.ahead_failed", error=str(error))
        disk = None
    with _templates_lock:
        _pool_pending[key] -= 1
        if disk is not None:
            _pool.setdefault(key, []).append(disk)


def _remove_pool() -> None:
    with _templates_lock:
        disks = [disk for ready in _pool.values() for disk in ready]
        _pool.clear()
    for disk in disks:
        disk.remove()


def _format(image: Path, size_mb: int) -> None:
    """Make `image`, a sparse file of `size_mb`, an empty ext4 filesystem."""
    with image.open("xb") as file:
        file.truncate(size_mb * 1024 * 1024)
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
          "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", str(image)],
         "formatting the sandbox's disk")  # fmt: skip


def _template(folder: Path, size_mb: int) -> Path:
    """This process's formatted image of `size_mb` in `folder`, made on first use."""
    with _templates_lock:
        key = (folder, size_mb)
        if key not in _templates or not _templates[key].is_file():
            name = f"{hostdirs.new_name('bwrap')}-template-{size_mb}.img"
            image = folder / name
            try:
                _format(image, size_mb)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    image.unlink()
                raise
            if not _templates:
                atexit.register(_remove_templates)
            _templates[key] = image
        return _templates[key]


def _remove_templates() -> None:
    for image in _templates.values():
        with contextlib.suppress(FileNotFoundError):
            image.unlink()
    _templates.clear()


def _forget_templates() -> None:
    """In a forked child the templates and ready disks are its parent's, which removes them."""
    global _templates_lock, _pool_maker
    _templates.clear()
    _pool.clear()
    _pool_pending.clear()
    _pool_maker = None
    _templates_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_templates)


def _copy_sparse(source: Path, dest: Path) -> None:
    """Copy `source` to the new file `dest`, holes kept as holes (only its data is copied)."""
    with source.open("rb") as src, dest.open("xb") as dst:
        size = os.fstat(src.fileno()).st_size
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError as error:
                if error.errno == errno.ENXIO:  # only a hole is left
                    return
                raise
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            while start < end:
                copied = os.copy_file_range(src.fileno(), dst.fileno(), end - start, start, start)
                if copied == 0:
                    raise OSError(f"{source} shrank while it was copied")
                start += copied
            offset = end


def _run(argv: list[str], what: str, hint: str = "") -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S,
                              check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxUnavailable(f"{what} failed: {error}") from error
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()[-300:]
        raise SandboxUnavailable(f"{what} failed ({' '.join(argv[:2])}...: {message})"
                                 + (f"; {hint}" if hint else ""))  # fmt: skip
