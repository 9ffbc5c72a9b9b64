"""The sandbox image: its tag, and building it where no registry can be reached.

The tag is `rdbench-sandbox:<hash>`, the hash taken over the Dockerfile, the files in image/
and the base image, so editing any of them gives a new tag and `ensure_image` builds it once.

Offline (no Docker Hub, no network inside `docker build`) the build needs two things from the
host, and this module makes both:
- a base image: Debian bookworm bootstrapped with `debootstrap` from the mirror that apt on this
  machine already uses, imported as `rdbench-base:bookworm-<hash of the recipe>`;
- a wheelhouse: `pip download` of image/requirements.txt on the host (cached under
  $XDG_CACHE_HOME/rdbench/wheelhouse), put in the build context, installed with --no-index.
With internet, `docker build .` from the repository root works with a stock Python base.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from rdbench.resources import resource_path
from rdbench.sandbox.base import AGENT_UID

log = structlog.get_logger()

IMAGE_REPOSITORY = "rdbench-sandbox"
BASE_REPOSITORY = "rdbench-base"
PYTHON_VERSION = "3.11"  # the Python of the image's base; the wheelhouse is fetched for it
DEBIAN_SUITE = "bookworm"

# Everything that decides what the bootstrapped base holds; its hash names the base image.
BOOTSTRAP_RECIPE: dict[str, Any] = {
    "suite": DEBIAN_SUITE,
    "variant": "minbase",
    "include": ["python3", "python3-venv", "ca-certificates", "procps", "vim-tiny"],
    "changes": [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["/bin/bash"]',
        "LABEL rdbench.base=1",
    ],
    "trim": ["var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"],
}

_GLIBC_MINOR = 36  # bookworm's glibc is 2.36: wheels for manylinux_2_36 and older run there
_BUILD_LOG_TAIL = 40  # lines of build output quoted in an ImageBuildError
_thread_lock = threading.Lock()


class ImageBuildError(RuntimeError):
    """Making the sandbox image (or its base, or its wheelhouse) failed; the message says how
    to fix it."""


# ---- what the image is made of --------------------------------------------------------------


def image_files(image_dir: Path | None = None) -> list[Path]:
    """The files of image/ that go into the build context and the tag (no wheelhouse, no
    caches), sorted."""
    root = image_dir if image_dir is not None else resource_path("image")
    if not root.is_dir():
        raise ImageBuildError(
            f"{root} is missing: the image/ folder (requirements.txt) ships with rdbench; "
            "reinstall rdbench or run from a full checkout"
        )
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.relative_to(root).parts[0] != "wheelhouse"
        and "__pycache__" not in path.parts
    )


def dockerfile_default_base(dockerfile: bytes | None = None) -> str:
    """The default of `ARG BASE_IMAGE=...` in the Dockerfile (the base used with internet)."""
    text = (dockerfile if dockerfile is not None else _dockerfile_bytes()).decode()
    match = re.search(r"^\s*ARG\s+BASE_IMAGE=(\S+)", text, re.MULTILINE)
    if match is None:
        raise ImageBuildError(
            "The Dockerfile has no `ARG BASE_IMAGE=<image>` line; add one before the first FROM"
        )
    return match.group(1).strip("\"'")


def base_image_tag() -> str:
    """The tag of the bootstrapped Debian base: `rdbench-base:bookworm-<hash of the recipe>`."""
    recipe = json.dumps(BOOTSTRAP_RECIPE, sort_keys=True).encode()
    return f"{BASE_REPOSITORY}:{DEBIAN_SUITE}-{hashlib.sha256(recipe).hexdigest()[:12]}"


def resolve_base(base: str = "auto", *, dockerfile: bytes | None = None) -> str:
    """The BASE_IMAGE a build uses: for "auto", the bootstrapped base where `debootstrap` is on
    PATH and apt has a bookworm source, else the Dockerfile's default; any other value as is."""
    if base != "auto":
        return base
    if shutil.which("debootstrap") is not None:
        with contextlib.suppress(ImageBuildError):
            apt_mirror()
            return base_image_tag()
    return dockerfile_default_base(dockerfile)


def image_inputs_hash(
    base: str = "auto",
    *,
    dockerfile: Path | bytes | None = None,
    image_dir: Path | None = None,
) -> str:
    """First 12 hex digits of a sha256 over the Dockerfile, the files of image/ and the base.

    Defaults to the shipped Dockerfile and image/; pass `dockerfile` (a path or its bytes) and
    `image_dir` to hash other ones.
    """
    if isinstance(dockerfile, Path):
        dockerfile = dockerfile.read_bytes()
    dockerfile_bytes = dockerfile if dockerfile is not None else _dockerfile_bytes()
    root = image_dir if image_dir is not None else resource_path("image")
    digest = hashlib.sha256(b"rdbench-image-v1\0")

    def add(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)

    add("Dockerfile", dockerfile_bytes)
    for path in image_files(root):
        add("image/" + path.relative_to(root).as_posix(), path.read_bytes())
    add("BASE_IMAGE", resolve_base(base, dockerfile=dockerfile_bytes).encode())
    add("AGENT_UID", str(AGENT_UID).encode())
    return digest.hexdigest()[:12]


def image_tag(base: str = "auto") -> str:
    """The sandbox image's tag, `rdbench-sandbox:<hash>`: what sandboxes run by default."""
    return f"{IMAGE_REPOSITORY}:{image_inputs_hash(base)}"


# ---- making it ------------------------------------------------------------------------------


def ensure_image(client: Any = None, *, base: str = "auto", rebuild: bool = False) -> str:
    """Return the sandbox image's tag, building the image first if no image has that tag
    (or if `rebuild`). `base` is "auto" (see `resolve_base`) or a BASE_IMAGE to build on."""
    client = client if client is not None else _docker_client()
    base_image = resolve_base(base)
    tag = image_tag(base)
    if not rebuild and _image_exists(client, tag):
        log.debug("image.present", tag=tag)
        return tag
    with _build_lock():
        if not rebuild and _image_exists(client, tag):  # another process built it meanwhile
            log.debug("image.present", tag=tag)
            return tag
        if base_image == base_image_tag():
            bootstrap_base_image(client)
        wheelhouse = _wheelhouse(resource_path("image") / "requirements.txt", _engine_arch(client))
        previous = _image_id(client, tag)
        with tempfile.TemporaryDirectory(prefix="rdbench-build-") as ctx:
            build_context(Path(ctx), wheelhouse=wheelhouse)
            built = _build(client, Path(ctx), tag=tag, base=base_image, nocache=rebuild)
        if previous is not None and previous != built:
            _remove_unused(client, previous)
    return tag


def build_context(
    ctx: Path,
    *,
    wheelhouse: Path | None = None,
    dockerfile: Path | None = None,
    image_dir: Path | None = None,
) -> Path:
    """Lay out a build context in the empty folder `ctx`: Dockerfile, image/ and the wheels of
    `wheelhouse` in image/wheelhouse/. Returns `ctx`."""
    dockerfile = dockerfile if dockerfile is not None else resource_path("Dockerfile")
    image_dir = image_dir if image_dir is not None else resource_path("image")
    shutil.copyfile(dockerfile, ctx / "Dockerfile")
    for path in image_files(image_dir):
        target = ctx / "image" / path.relative_to(image_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if wheelhouse is not None:
        wheels = ctx / "image" / "wheelhouse"
        wheels.mkdir(parents=True, exist_ok=True)
        for wheel in sorted(wheelhouse.glob("*.whl")):
            shutil.copyfile(wheel, wheels / wheel.name)
    return ctx


def apt_mirror(
    suite: str = DEBIAN_SUITE,
    *,
    sources_list: Path = Path("/etc/apt/sources.list"),
    sources_dir: Path = Path("/etc/apt/sources.list.d"),
) -> str:
    """The URI of the apt source on this machine that serves Debian `suite` with component
    main (never its -security or -updates suites), read from sources.list and the .list and
    deb822 .sources files beside it."""
    files = [sources_list] if sources_list.is_file() else []
    if sources_dir.is_dir():
        files += sorted(p for p in sources_dir.iterdir() if p.suffix in {".list", ".sources"})
    for path in files:
        text = path.read_text(errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, suites, components in entries:
            if suite in suites and "main" in components and not uri.startswith("cdrom:"):
                return uri.rstrip("/")
    looked_in = ", ".join(str(p) for p in files) or f"{sources_list} and {sources_dir}"
    raise ImageBuildError(
        f"No apt source serves Debian {suite!r} with component main (looked in {looked_in}); "
        f"debootstrap needs one to make the base image. Add a `deb <mirror> {suite} main` line "
        "to /etc/apt/sources.list, or pass --base IMAGE with a Debian-based Python "
        f"{PYTHON_VERSION} image"
    )


def bootstrap_base_image(client: Any) -> str:
    """Return the tag of the bootstrapped Debian base, making it with debootstrap first if no
    image has that tag (takes about a minute, needs root and apt's mirror)."""
    tag = base_image_tag()
    if _image_exists(client, tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap is not on PATH; install it with `apt-get install debootstrap`, "
            "or pass --base IMAGE"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise ImageBuildError(
            "debootstrap needs root to make the base image; run as root once, or pass --base IMAGE"
        )
    mirror = apt_mirror()
    recipe = BOOTSTRAP_RECIPE
    started = time.monotonic()
    log.info("image.base.bootstrap", tag=tag, suite=recipe["suite"], variant=recipe["variant"])
    with tempfile.TemporaryDirectory(prefix="bootstrap-", dir=_cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = [
            debootstrap,
            f"--variant={recipe['variant']}",
            f"--include={','.join(recipe['include'])}",
            recipe["suite"],
            str(rootfs),
            mirror,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = _tail(done.stdout + done.stderr)
            debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
            if debootstrap_log.is_file():
                detail += "\n" + _tail(debootstrap_log.read_text(errors="replace"))
            raise ImageBuildError(
                f"debootstrap failed (exit {done.returncode}):\n{detail}\nCheck that apt's "
                f"mirror is reachable (`apt-get update`), install debootstrap with "
                "`apt-get install debootstrap`, or pass --base IMAGE"
            )
        for pattern in recipe["trim"]:
            for path in rootfs.glob(pattern):
                path.unlink()
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."],
            check=True,
            capture_output=True,
        )
        repository, _, version = tag.partition(":")
        client.api.import_image(
            src=str(archive), repository=repository, tag=version, changes=recipe["changes"]
        )
    if not _image_exists(client, tag):
        raise ImageBuildError(f"Importing the bootstrapped root filesystem as {tag} failed")
    log.info("image.base.ready", tag=tag, seconds=round(time.monotonic() - started, 1))
    return tag


# ---- helpers --------------------------------------------------------------------------------


def _dockerfile_bytes() -> bytes:
    path = resource_path("Dockerfile")
    if not path.is_file():
        raise ImageBuildError(
            f"{path} is missing: the Dockerfile ships with rdbench; reinstall rdbench or run "
            "from a full checkout"
        )
    return path.read_bytes()


def _docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # any failure to reach the engine
        raise ImageBuildError(
            f"No Docker engine answered ({error}); start one (dockerd) and check DOCKER_HOST"
        ) from error
    return client


def _image_exists(client: Any, tag: str) -> bool:
    return _image_id(client, tag) is not None


def _image_id(client: Any, tag: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None


def _remove_unused(client: Any, image_id: str) -> None:
    """Remove an image a rebuild replaced, unless a container still uses it."""
    import docker.errors

    try:
        client.images.remove(image_id)
    except docker.errors.APIError as error:  # in use: `docker image prune` removes it later
        log.debug("image.replaced.kept", id=image_id, reason=str(error))
    else:
        log.info("image.replaced.removed", id=image_id)


def _engine_arch(client: Any) -> str:
    """The engine's CPU architecture as wheel platform tags spell it (x86_64, aarch64)."""
    arch = str(client.version().get("Arch", "amd64"))
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def _cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "rdbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialize builds across threads and processes of this user."""
    with _thread_lock, open(_cache_dir() / "image.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): threads are still serialized
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheelhouse(requirements: Path, arch: str, *, constraints: Path | None = None) -> Path:
    """A folder of wheels for `requirements` (held to the pins of `constraints`, if given) on
    CPython 3.11 / glibc 2.36 / `arch`, downloaded on the host once and cached."""
    data = requirements.read_bytes()
    if constraints is not None:
        data += b"\0constraints\0" + constraints.read_bytes()
    key = hashlib.sha256(data + f"\0{PYTHON_VERSION}\0{arch}".encode()).hexdigest()[:12]
    folder = _cache_dir() / "wheelhouse" / key
    if (folder / ".complete").is_file():
        return folder
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(_GLIBC_MINOR, 4, -1)]
    if arch in {"x86_64", "i686"}:
        platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    elif arch in {"aarch64", "ppc64le", "s390x", "armv7l"}:
        platforms += [f"manylinux2014_{arch}"]
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
        "-r", str(requirements), "-d", str(folder), "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
    ]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    if constraints is not None:
        command += ["-c", str(constraints)]
    log.info("image.wheelhouse.download", requirements=str(requirements), arch=arch)
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageBuildError(
            f"Downloading the image's Python packages failed (pip exit {done.returncode}):\n"
            f"{_tail(done.stdout + done.stderr)}\nThe host needs pip and access to the package "
            f"index; check `{' '.join(command[:4])} -r {requirements}` works, or fix the pins "
            f"in {requirements}"
        )
    (folder / ".complete").write_text("")
    log.info("image.wheelhouse.ready", path=str(folder), wheels=len(list(folder.glob("*.whl"))))
    return folder


def _build(
    client: Any, ctx: Path, *, tag: str, base: str, nocache: bool = False,
    network_mode: str | None = None,
) -> str:
    """Build the image in `ctx` as `tag` on `base` (its RUN steps on the network
    `network_mode`, "none" for none; default: the engine's), logging progress; return its
    id."""
    import docker.errors

    started = time.monotonic()
    log.info("image.build.start", tag=tag, base=base)
    output: list[str] = []
    image_id: str | None = None
    try:
        for chunk in client.api.build(
            path=str(ctx),
            tag=tag,
            buildargs={"BASE_IMAGE": base, "AGENT_UID": str(AGENT_UID)},
            rm=True,
            forcerm=True,
            nocache=nocache,
            network_mode=network_mode,
            decode=True,
            timeout=1800,
        ):
            if "error" in chunk:
                output.append(str(chunk["error"]))
                raise ImageBuildError(
                    f"docker build of {tag} on {base} failed: {chunk['error']}\n"
                    f"{_tail(''.join(output))}\nIf the base image could not be pulled, pass "
                    "--base IMAGE with an image the engine has; if pip failed, check the pins "
                    "in image/requirements.txt"
                )
            text = str(chunk.get("stream", ""))
            output.append(text)
            line = text.strip()
            if line.startswith("Step "):
                log.info("image.build.step", step=line)
            elif line:
                log.debug("image.build.output", line=line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except docker.errors.APIError as error:
        raise ImageBuildError(
            f"The Docker engine refused to build {tag} on {base}: {error}; check that the "
            "base image exists (`docker images`) or pass --base IMAGE"
        ) from error
    image = client.images.get(tag)
    log.info(
        "image.build.done",
        tag=tag,
        id=image_id or image.id,
        size_mb=round(image.attrs.get("Size", 0) / 1e6),
        seconds=round(time.monotonic() - started, 1),
    )
    return str(image.id)


def _tail(text: str, lines: int = _BUILD_LOG_TAIL) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _one_line_entries(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, [suite], components) of each `deb` line of a one-line-style sources file."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]], words[2:]


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of each enabled `deb` stanza of a deb822 .sources file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key: str | None = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key is not None:  # continuation of a multi-line value
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").strip().lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            yield uri, suites, components
