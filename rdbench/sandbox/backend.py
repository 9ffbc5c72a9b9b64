"""Sandbox backends as plug-ins: the contract a backend meets, and the registry that finds them.

A backend is one class (or object) meeting SandboxBackend, declared in the entry-point group
`rdbench.sandboxes` by whichever package ships it. rdbench's own are declared the same way in
its pyproject.toml:

    [project.entry-points."rdbench.sandboxes"]
    docker = "rdbench.sandbox.docker:DockerBackend"
    bwrap = "rdbench.sandbox.bwrap:BwrapBackend"

A third party adds `podman = "rdbench_podman:PodmanBackend"` to its own package and
`--sandbox podman` works. The entry point's name is the backend's name. Only the entry point
of a backend that is used is imported, so naming or checking `bwrap` loads no Docker SDK.
`auto` is not a backend of its own: it is the first usable one by priority (select.py).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

import structlog

from rdbench.sandbox.base import (
    SANDBOXES,
    Sandbox,
    SandboxConfig,
    SandboxFactory,
    SandboxUnavailable,
)

log = structlog.get_logger()

ENTRY_POINT_GROUP = "rdbench.sandboxes"
AUTO = "auto"
DEFAULT_PRIORITY = 100  # a backend that declares no priority comes after the shipped ones
MEMBERS = ("name", "problem", "prepare", "remove_leftovers", "start")  # priority is optional


class UnknownBackend(SandboxUnavailable):
    """No backend is registered under the name asked for."""


@runtime_checkable
class SandboxBackend(Protocol):
    """What a sandbox backend declares: its name, how much `auto` prefers it, whether it can
    run here, what it makes ready from a built image, how it cleans up, and how it starts a
    sandbox."""

    name: str
    # `auto` takes the usable backend with the lowest (docker 10, bwrap 20; DEFAULT_PRIORITY
    # for a backend that declares none)
    priority: int

    def problem(self) -> str | None:
        """Why this backend cannot start a sandbox here, with how to fix it; None when it can."""
        ...

    def prepare(self, image: str) -> str | None:
        """Make what the backend needs from the built sandbox image `image` (`rdbench image
        build` calls it); a line saying what was made, or None."""
        ...

    def remove_leftovers(self, everything: bool) -> list[str]:
        """Remove sandboxes whose run ended (every one of this backend's with `everything`);
        the ids of those removed. SandboxUnavailable when the backend cannot look."""
        ...

    def start(self, config: SandboxConfig, **options: Any) -> Sandbox:
        """A new sandbox made with `config` (and backend-specific `options`), ready to use."""
        ...


_loaded: dict[tuple[str, str], SandboxBackend] = {}  # by name and entry point value


def _entry_points() -> dict[str, EntryPoint]:
    """The registered backends' entry points by name (the first declared wins a name)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def _load(point: EntryPoint) -> SandboxBackend:
    """The backend an entry point names: a class is instantiated once, an object used as is."""
    key = (point.name, point.value)
    if key in _loaded:
        return _loaded[key]
    try:
        target = point.load()
        backend = target() if isinstance(target, type) else target
    except Exception as error:
        raise SandboxUnavailable(
            f"The sandbox backend {point.name!r} ({point.value}, entry point group "
            f"{ENTRY_POINT_GROUP!r}) cannot be loaded: {error}; reinstall the package "
            "declaring it, or run with another --sandbox backend"
        ) from error
    missing = [member for member in MEMBERS if not hasattr(backend, member)]
    if missing:
        raise SandboxUnavailable(
            f"The sandbox backend {point.name!r} ({point.value}) lacks {', '.join(missing)}: "
            "a backend must have every member of rdbench.sandbox.backend.SandboxBackend"
        )
    _loaded[key] = backend
    return backend


def _priority(name: str, point: EntryPoint) -> int:
    """The priority of the backend `point`, DEFAULT_PRIORITY (logged) when it cannot be loaded."""
    try:
        return int(getattr(_load(point), "priority", DEFAULT_PRIORITY))
    except SandboxUnavailable as error:
        log.warning("sandbox.backend_unloadable", backend=name, error=str(error))
        return DEFAULT_PRIORITY


def backend_names() -> list[str]:
    """The registered backends' names, the one `auto` prefers first (lowest priority, then by
    name). Loads every backend to read its priority: to check one name, use get_backend."""
    points = _entry_points()
    return sorted(points, key=lambda name: (_priority(name, points[name]), name))


def known_names() -> str:
    """Every name --sandbox accepts, for a message: auto, the registered backends, then any
    registered in this process only (base.SANDBOXES)."""
    names = backend_names()
    return ", ".join([AUTO, *names, *(name for name in SANDBOXES if name not in names)])


def get_backend(name: str) -> SandboxBackend:
    """The backend registered as `name`, importing only its entry point; for "auto" the first
    usable backend by priority. SandboxUnavailable naming the known backends for an unknown
    name (and, for "auto", every backend's problem when none can run here)."""
    if name == AUTO:
        from rdbench.sandbox.select import pick

        return pick()
    point = _entry_points().get(name)
    if point is None:
        raise UnknownBackend(
            f"Unknown sandbox backend {name!r}; known: {known_names()}. A third-party backend "
            f"is installed by a package declaring it in the {ENTRY_POINT_GROUP!r} entry points"
        )
    return _load(point)


def usable_backends() -> list[str]:
    """The registered backends that can start a sandbox here, the one `auto` prefers first."""
    usable = []
    for name in backend_names():
        try:
            if get_backend(name).problem() is None:
                usable.append(name)
        except SandboxUnavailable:
            continue
    return usable


def backend_factory(name: str) -> SandboxFactory:
    """What starts a sandbox of backend `name`: one registered in this process
    (base.SANDBOXES) first, else the registered backend's `start` (see get_backend)."""
    if name in SANDBOXES:
        return SANDBOXES[name]
    return get_backend(name).start


def make_sandbox(name: str, config: SandboxConfig, **options: Any) -> Sandbox:
    """Start a sandbox of backend `name` ("auto": the first usable by priority) with `config`
    and the backend's own `options`."""
    return backend_factory(name)(config, **options)
