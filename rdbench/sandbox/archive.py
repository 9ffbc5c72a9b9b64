"""Tar archives: how files move into and out of sandboxes."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path

from rdbench.sandbox.base import AGENT_UID

UID_BY_OWNER = {"root": 0, "agent": AGENT_UID}


def _owner_ids(owner: str) -> int:
    if owner not in UID_BY_OWNER:
        raise ValueError(f"Unknown file owner {owner!r}; expected one of {sorted(UID_BY_OWNER)}")
    return UID_BY_OWNER[owner]


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
    `owner`; with `private`, nobody else may read them."""
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


def strip_top_folder(tar_bytes: bytes) -> bytes:
    """Re-pack a tar of one folder (`name/...`) as gzip with names relative to that folder."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as source,
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source:
            _, _, rest = member.name.partition("/")
            if not rest:
                continue
            member.name = rest
            data = source.extractfile(member) if member.isfile() else None
            target.addfile(member, data)
    return out.getvalue()


def extract_tar_gz(data: bytes, destination: str | Path) -> None:
    """Unpack a gzip tar (as made by `strip_top_folder`) into `destination`, safely."""
    Path(destination).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(destination, filter="data")
