"""Tar archives: how files move into and out of sandboxes.

Small files and rdbench's own folders (a task's workspace and grader) are packed in memory
here. An agent's workspace never is, and the host never unpacks it: it leaves its sandbox as
the output of GNU tar run inside (streamed to a host file through an `ArchiveSink`, which
stops at a size limit), and enters the grading sandbox as that file, unpacked there by GNU tar
as the agent user. Links stay links, hard links, FIFOs and sparse files are kept as they are,
and a deep folder tree costs no recursion on the host.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rdbench.sandbox.base import (
    AGENT_UID,
    ArchiveError,
    ArchiveTooLarge,
    Sandbox,
    SandboxFileNotFound,
)

UID_BY_OWNER = {"root": 0, "agent": AGENT_UID}
CHUNK = 1 << 16
MIB = 1024**2
USAGE_TIMEOUT_S = 120.0
STREAM_TIMEOUT_S = 1800.0  # the longest an export or an unpack may take
# Inside a sandbox: the used size of folder $1 in KiB (sparse holes are free, hard links
# counted once), then its contents as a gzip tar on stdout. Exit 3: no such folder.
USAGE_SCRIPT = '[ -d "$1" ] || exit 3; exec du -s -k -x -- "$1"'
# (Names are relative to the folder, without "./"; links are stored, never followed.)
EXPORT_SCRIPT = """
[ -d "$1" ] || exit 3
cd -- "$1" || exit 4
find . -mindepth 1 -maxdepth 1 -printf '%P\\0' |
    tar --sparse --null --verbatim-files-from -T - -czf -
"""
# Unpack a gzip tar into folder $1 (run as the agent user), from stdin or from the file $2
# (which is then removed).
IMPORT_SCRIPT = """
[ -d "$1" ] || exit 3
if [ -z "$2" ]; then exec tar -C "$1" -xzf -; fi
tar -C "$1" -xzf "$2"; status=$?; rm -f -- "$2"; exit $status
"""
# Warnings of GNU tar that leave a good archive behind: what the agent made unreadable is
# left out (with a note), what changed while tar read it is taken as it was.
_SKIPPABLE = ("Cannot open", "Cannot savedir", "Cannot read", "Cannot stat",
              "file changed as we read it", "File removed before we read it",
              "socket ignored", "Exiting with failure status due to previous errors")  # fmt: skip


def _owner_ids(owner: str) -> int:
    if owner not in UID_BY_OWNER:
        raise ValueError(f"Unknown file owner {owner!r}; expected one of {sorted(UID_BY_OWNER)}")
    return UID_BY_OWNER[owner]


GET_DIR_LIMIT = 256 * 1024**2  # the most get_dir holds in memory


def dir_in_memory(sandbox: Sandbox, path: str, max_bytes: int = GET_DIR_LIMIT) -> bytes:
    """A gzip tar of the folder `path` in `sandbox`, held in memory (for small folders;
    export_dir streams): what every backend's get_dir returns."""
    buffer = io.BytesIO()
    sandbox.export_dir(path, buffer, max_bytes=max_bytes)
    return buffer.getvalue()


def too_large(measure: str, limit: int) -> ArchiveTooLarge:
    """The error (and what the agent is told) when a workspace passes `limit` bytes;
    `measure` says by how much ("it uses 1073.7 MB of disk")."""
    return ArchiveTooLarge(
        f"The workspace is too large to grade: {measure}, over this task's limit of "
        f"{limit / MIB:.0f} MB ([sandbox] workspace_mb). Delete what the grader does not need "
        "(data copies, checkpoints, virtual environments, caches) and try again."
    )


def check_usage(sandbox: Sandbox, path: str, max_bytes: int | None, *, user: str) -> None:
    """Refuse (ArchiveTooLarge) a folder whose used disk space passes `max_bytes`, before
    archiving it. SandboxFileNotFound when it is missing. When `du` cannot tell (a part is
    unreadable, it took too long), the archive's own size limit still holds."""
    if max_bytes is None:
        return
    result = sandbox.exec(["sh", "-c", USAGE_SCRIPT, "sh", path], user=user,
                          timeout=USAGE_TIMEOUT_S)  # fmt: skip
    if result.returncode == 3:
        raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
    words = result.stdout.split()
    if result.timed_out or not words or not words[0].isdigit():
        return
    used = int(words[0]) * 1024
    if used > max_bytes:
        raise too_large(f"it uses {used / MIB:.1f} MB of disk", max_bytes)


class ArchiveSink:
    """A writable target for a streamed archive that counts the bytes and refuses to grow
    past `max_bytes`: `add` returns False (and writes nothing more) once it would."""

    def __init__(self, dest: BinaryIO, max_bytes: int | None):
        self.dest = dest
        self.max_bytes = max_bytes
        self.size = 0
        self.over = False

    def add(self, chunk: bytes) -> bool:
        """Write `chunk` unless that passes the limit; False once the limit was passed."""
        if self.over:
            return False
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            self.over = True
            return False
        self.dest.write(chunk)
        return True


def export_outcome(returncode: int, stderr: str, path: str) -> str:
    """Read GNU tar's exit of an export: the note on what it left out ("" when nothing);
    ArchiveError when no sound archive came out (3: no such folder, 4: not readable)."""
    if returncode == 3:
        raise ArchiveError(f"There is no folder {path} to archive")
    if returncode == 4:
        raise ArchiveError(f"The folder {path} is not readable by the agent user; make it "
                           "readable (chmod u+rx) so it can be graded")  # fmt: skip
    lines = [line for line in stderr.splitlines() if line.strip()]
    if returncode in (0, 1) or (
        returncode == 2 and all(any(key in line for key in _SKIPPABLE) for line in lines)
    ):
        kept = [line for line in lines if "Exiting with failure" not in line]
        return "\n".join(kept[:20])
    raise ArchiveError(f"Archiving {path} failed (tar exit {returncode}): {stderr[-500:]}")


def unpack_outcome(returncode: int, stderr: str) -> None:
    """Raise ArchiveError unless GNU tar unpacked a workspace cleanly."""
    if returncode != 0:
        raise ArchiveError(
            f"The workspace could not be unpacked (tar exit {returncode}): {stderr.strip()[-500:]}"
        )


def pack_folder(folder: Path, dest: Path) -> None:
    """Archive the contents of the host folder `folder` into the gzip tar `dest` with GNU
    tar (links stored as links and never followed, sparse files kept sparse). ArchiveError
    when `folder` is missing or tar fails."""
    if not folder.is_dir():
        raise ArchiveError(f"{folder} is not a folder")
    with dest.open("wb") as file:
        result = subprocess.run(
            ["sh", "-c", EXPORT_SCRIPT, "sh", str(folder)],
            stdin=subprocess.DEVNULL, stdout=file, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
    stderr = result.stderr.decode("utf-8", "replace")
    export_outcome(result.returncode, stderr, str(folder))


def check_archive(path: Path) -> None:
    """Check that the host file `path` is a gzip tar rdbench can grade, reading only its
    headers (streamed, in bounded memory). ArchiveError saying what is wrong: missing,
    empty, not gzip, not a tar, no members, a member outside the folder (`..` or absolute)
    or a hard link to one."""
    if not path.exists():
        raise ArchiveError(f"{path} does not exist")
    if not path.is_file():
        raise ArchiveError(f"{path} is not a file or a folder")
    if path.stat().st_size == 0:
        raise ArchiveError(f"{path} is empty (0 bytes); expected a workspace.tar.gz")
    with path.open("rb") as file:
        magic = file.read(2)
    if magic != b"\x1f\x8b":
        raise ArchiveError(
            f"{path} is not gzip-compressed; give a folder or a .tar.gz (gzip -k FILE.tar "
            "compresses a plain tar)"
        )
    members = 0
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                members += 1
                _check_member(path, member)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(f"{path} is not a readable gzip tar: {error}") from error
    if members == 0:
        raise ArchiveError(f"{path} holds no files; expected a workspace.tar.gz")


def _outside(name: str) -> bool:
    return name.startswith("/") or ".." in Path(name).parts


def _check_member(path: Path, member: tarfile.TarInfo) -> None:
    if _outside(member.name):
        raise ArchiveError(
            f"{path}: member {member.name!r} lies outside the workspace (absolute or '..')"
        )
    if member.islnk() and _outside(member.linkname):
        raise ArchiveError(
            f"{path}: hard link {member.name!r} points outside the workspace "
            f"({member.linkname!r})"
        )
    if member.ischr() or member.isblk():
        raise ArchiveError(f"{path}: member {member.name!r} is a device node")


def file_as_tar_member(source: Path, name: str, *, owner: str = "agent") -> Iterator[bytes]:
    """An uncompressed tar holding the host file `source` as the one member `name` (owned by
    `owner`, mode 600), yielded in chunks: the file is never held in memory."""
    size = source.stat().st_size
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.uid = info.gid = _owner_ids(owner)
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    with source.open("rb") as file:
        while sent < size:
            chunk = file.read(min(CHUNK, size - sent))
            if not chunk:
                raise OSError(f"{source} shrank while it was being sent")
            sent += len(chunk)
            yield chunk
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def single_file_tar(name: str, data: bytes, *, owner: str = "agent", mode: int = 0o644) -> bytes:
    """An uncompressed tar holding one file `name` with `data`, owned by `owner`."""
    uid = _owner_ids(owner)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_tar(folder: str | Path, *, owner: str = "agent", private: bool = False) -> bytes:
    """An uncompressed tar of the contents of `folder` (names relative to it), all owned by
    `owner`; with `private`, nobody else may read them. Only for rdbench's own folders (a
    task's workspace and grader): it is built in memory."""
    uid = _owner_ids(owner)
    root = Path(folder)

    def chown(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = uid
        info.uname = info.gname = ""
        if private:
            info.mode &= 0o700
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=chown)
    return buffer.getvalue()


def first_file(tar_bytes: bytes) -> bytes:
    """The content of the first regular file in an uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
    raise FileNotFoundError("the archive holds no regular file")
