"""The bwrap backend's root filesystem: the sandbox image's files, exported once and cached.

bubblewrap needs no daemon, but it needs the image's files on disk. `ensure_rootfs()` exports
them from the Docker image once (`docker create` + `export`, streamed into `tar`) and caches
them, so the bwrap backend keeps working with the Docker engine stopped:

    $XDG_CACHE_HOME/rdbench/rootfs/<key>/root/        the image's filesystem (mounted read-only)
    $XDG_CACHE_HOME/rdbench/rootfs/<key>/image.json   its tag, id and environment

`<key>` is the hash in the tag for rdbench's own images (`rdbench-sandbox:<hash>`, a hash of
what the image is built from) and the tag spelled as a file name otherwise. A tag is assumed to
name fixed content: delete the folder to export a changed image again. The export is atomic
(extracted into a temporary folder, then renamed) and serialized across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from rdbench.sandbox.base import SandboxUnavailable

log = structlog.get_logger()

METADATA = "image.json"
# Files the container runtime would provide, written into the exported tree.
ETC_FILES = {
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    "127.0.1.1\tsandbox\n",
    "etc/hostname": "sandbox\n",
    "etc/resolv.conf": "",  # no name servers: nothing resolves but /etc/hosts
}
# What the backend runs inside: a shell, tar for files, setpriv to drop to the agent user.
REQUIRED = ["bin/sh", "usr/bin/env", "usr/bin/tar", "usr/bin/setpriv", "etc/passwd"]
_thread_lock = threading.Lock()


def rootfs_root() -> Path:
    """The folder holding every exported root filesystem."""
    from rdbench.image import _cache_dir

    return _cache_dir() / "rootfs"


def rootfs_key(image: str) -> str:
    """The cache folder name for `image`: the content hash of an rdbench tag, else the tag."""
    from rdbench.image import IMAGE_REPOSITORY

    repository, _, tag = image.rpartition(":")
    if repository == IMAGE_REPOSITORY and re.fullmatch(r"[0-9a-f]{12,64}", tag):
        return tag
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image)


def rootfs_dir(image: str | None = None) -> Path:
    """Where the root filesystem of `image` (default: the sandbox image) is, or would be,
    cached; its files are in `root/` below."""
    from rdbench.image import image_tag

    return rootfs_root() / rootfs_key(image or image_tag())


def image_env(root: Path) -> dict[str, str]:
    """The environment the image sets (its ENV lines), read from beside the exported `root`."""
    metadata = json.loads((root.parent / METADATA).read_text(encoding="utf-8"))
    return dict(item.split("=", 1) for item in metadata.get("env", []) if "=" in item)


def ensure_rootfs(image: str | None = None, *, client: Any = None) -> Path:
    """The folder holding the filesystem of `image` (default: the sandbox image), exported
    from Docker first if it is not cached yet.

    Raises SandboxUnavailable when it is missing and no Docker engine answers, or when the
    Docker engine has no such image.
    """
    from rdbench.image import image_tag

    image = image or image_tag()
    folder = rootfs_dir(image)
    if (folder / METADATA).is_file():
        return folder / "root"
    with _export_lock():
        if (folder / METADATA).is_file():  # another process exported it meanwhile
            return folder / "root"
        if client is None:
            client = _connect(image, folder)
        export_rootfs(client, image, folder)
    return folder / "root"


def export_for_bwrap(image: str, *, client: Any = None) -> Path | None:
    """Export `image` for the bwrap backend where bubblewrap is installed (what `rdbench
    image build` does after building); its root folder, or None without bubblewrap."""
    if shutil.which("bwrap") is None:
        return None
    return ensure_rootfs(image, client=client)


def export_rootfs(client: Any, image: str, folder: Path) -> None:
    """Export the filesystem of Docker `image` into `folder` (replacing nothing: the folder
    must not exist), atomically."""
    import docker.errors

    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("sandbox.rootfs.export", image=image, path=str(folder))
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        try:
            attrs = client.images.get(image).attrs
            container = client.containers.create(
                image, command=["true"],
                labels={"rdbench": "1", "rdbench.pid": str(os.getpid()),
                        "rdbench.role": "rootfs-export"},
            )  # fmt: skip
        except docker.errors.ImageNotFound as error:
            raise SandboxUnavailable(
                f"Sandbox image {image!r} is missing, so the bwrap backend has no root "
                "filesystem to export; build it with `rdbench image build`"
            ) from error
        try:
            _extract(container.export(), staging / "root")
        finally:
            container.remove(force=True)
        _finish(staging / "root", image)
        metadata = {
            "image": image,
            "id": attrs.get("Id"),
            "env": (attrs.get("Config") or {}).get("Env") or [],
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=1), encoding="utf-8")
        staging.chmod(0o755)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("sandbox.rootfs.ready", image=image, path=str(folder))


def _connect(image: str, folder: Path) -> Any:
    from rdbench.sandbox.docker import connect

    try:
        return connect()
    except SandboxUnavailable as error:
        raise SandboxUnavailable(
            f"The bwrap backend has no root filesystem for {image} (looked in {folder}) and no "
            "Docker engine answers to export one from the image. Start Docker once and run "
            "`rdbench image build` (it builds the image and exports its files for bwrap); "
            "after that bwrap works without Docker."
        ) from error


def _extract(chunks: Iterator[bytes], root: Path) -> None:
    """Unpack the tar stream `chunks` into `root` as it arrives, owners and modes kept."""
    root.mkdir(mode=0o755)
    with tempfile.TemporaryFile() as stderr:
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "-x", "-p", "--numeric-owner", "--exclude=dev/*",
             "--exclude=.dockerenv", "-f", "-"],
            stdin=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        assert tar.stdin is not None
        try:
            for chunk in chunks:
                tar.stdin.write(chunk)
        except BrokenPipeError:
            pass  # tar gave up; its exit status and message say why
        finally:
            tar.stdin.close()
        tar.wait()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if tar.returncode != 0:
        raise SandboxUnavailable(
            f"Unpacking the sandbox image into {root} failed (tar exit {tar.returncode}): "
            f"{errors.strip()[-800:]}. Check the free space there (`df -h {root.parent}`)."
        )
    root.chmod(0o755)


def _finish(root: Path, image: str) -> None:
    """Write the files a container runtime would provide; check what the backend needs."""
    for name, text in ETC_FILES.items():
        path = root / name
        if path.is_symlink():
            path.unlink()
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    missing = [name for name in REQUIRED if not (root / name).exists()]
    if missing:
        raise SandboxUnavailable(
            f"The image {image} lacks {', '.join('/' + name for name in missing)}, which the "
            "bwrap backend runs inside (setpriv is in Debian's util-linux); add them to the image"
        )


@contextlib.contextmanager
def _export_lock() -> Iterator[None]:
    """Serialize exports across the threads and processes of this user."""
    rootfs_root().mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(rootfs_root() / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
