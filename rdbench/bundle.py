"""Leaderboard bundles: pack a finished run into one gzipped tar (`make_bundle`) and open one
safely for reading (`open_bundle`).

The layout is submission.py's: `manifest.json` and, per episode, `episodes/<episode_id>/`
with `result.json`, `transcript.jsonl`, `workspace.tar.gz` (when the episode left one),
`handoff.md` (a relay's notes, when it left them) and `session.cast` (a person's terminal
session, rdbench.cast); a team episode's workers under `workers/<i>/` (`WORKER_FILES`, i
from 0 to the team's size - 1).
The tar is deterministic for a given manifest: members sorted by name, regular files only,
fixed owner, mode and mtime, and a gzip header without a time or name, so the same files
always give the same bytes (and the same SHA-256).

Opening never trusts the archive: only regular files and folders under relative paths
without `..` are taken, every link, device or duplicate is refused, and the number of
members and their total size are capped, all before a byte is written to disk.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

import structlog

from rdbench.cast import CAST
from rdbench.records import EpisodeResult, RecordError, load_result
from rdbench.relay import HANDOFF
from rdbench.submission import (
    EPISODES,
    MANIFEST,
    WORKERS,
    AgentEntry,
    FileEntry,
    Manifest,
    TaskEntry,
)
from rdbench.transcript import RESULT, TRANSCRIPT, WORKSPACE

log = structlog.get_logger()

EPISODE_FILES = (RESULT, TRANSCRIPT, WORKSPACE, HANDOFF, CAST)
"""The files an episode folder of a bundle may hold (the workspace, the relay's notes and a
person's terminal recording only when the episode left them)."""
WORKER_FILES = (TRANSCRIPT, WORKSPACE, HANDOFF)
"""The files a team worker's folder (`workers/<i>/`) of a bundle may hold."""
MAX_MEMBERS = 50_000
"""Most members open_bundle takes: room for over 10,000 single-agent episodes."""
MAX_BYTES = 64 * 1024**3
"""Most bytes (all members together, unpacked) open_bundle takes."""
FIXED_MTIME = 946_684_800  # 2000-01-01T00:00:00Z: every member's time, so bytes repeat
_CHUNK = 1024 * 1024


class BundleError(ValueError):
    """A bundle cannot be made or opened; the message says what was wrong and the fix."""


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file at `path`, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- making one ------------------------------------------------------------------------------


def make_bundle(
    run_folder: str | Path,
    out: str | Path,
    *,
    name: str,
    agent_version: str | None = None,
    notes: str = "",
) -> Path:
    """Pack the finished run in `run_folder` (a `rdbench run --out` folder) into the bundle
    `out` and return its path. The manifest names the agents, tasks (id, version and content
    hash of each task as installed now), image, budgets, seeds and every file's SHA-256.

    BundleError when the folder is no run, an episode is unfinished or unreadable, or a task
    changed since the run (its content hash differs from the one the episodes recorded)."""
    from rdbench import __version__
    from rdbench.report import load_run
    from rdbench.suite import RunConfig, RunConfigError

    root = Path(run_folder)
    target = Path(out)
    if not name.strip():
        raise BundleError("A submission needs a --name (the name the leaderboard shows)")
    try:
        config = RunConfig.load(root)
        records = load_run(root)
    except (RunConfigError, RecordError) as error:
        raise BundleError(str(error)) from error
    if records.unreadable:
        raise BundleError(f"{root}: unreadable episode records: {'; '.join(records.unreadable)}")
    if records.unfinished:
        raise BundleError(
            f"{root}: {len(records.unfinished)} episode(s) unfinished "
            f"({', '.join(records.unfinished[:3])}); finish the run with "
            f"`rdbench run --resume {root}` before submitting it"
        )
    if not records.results:
        raise BundleError(f"{root}: no finished episode to submit")
    results = sorted(records.results, key=lambda result: result.episode_id)
    for result in results:
        if not (root / result.episode_id / RESULT).is_file():
            raise BundleError(f"{root}: episode {result.episode_id} is not in a folder of its "
                              "own name; bundle the run folder `rdbench run` wrote")
    tasks = _task_entries(config.tasks, results)
    image = _one_of({result.image for result in results if result.image}, "image")
    sandboxes = {result.sandbox for result in results if result.sandbox}
    files = [item for result in results for item in _episode_files(root, result)]
    missing = [
        result.episode_id for result in results
        if not (root / result.episode_id / TRANSCRIPT).is_file()
    ]
    if missing:
        raise BundleError(f"{root}: episode(s) without {TRANSCRIPT}: {', '.join(missing)}")
    manifest = Manifest(
        name=name.strip(),
        agent_version=agent_version,
        notes=notes,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rdbench_version=__version__,
        agents=[_agent_entry(choice, results) for choice in config.agents],
        tasks=tasks,
        tools=config.tools,
        budgets=dict(config.budget),
        seeds=list(config.seeds),
        sandbox=sandboxes.pop() if len(sandboxes) == 1 else config.sandbox,
        image_tag=image or "",
        image_hash=(image or "").partition(":")[2],
        episodes=[result.episode_id for result in results],
        files=[
            FileEntry(path=inside, size=path.stat().st_size, sha256=file_sha256(path))
            for inside, path in files
        ],
    )
    write_bundle(manifest, dict(files), target)
    log.info("bundle.made", path=str(target), episodes=len(results), files=len(files))
    return target


def _episode_files(root: Path, result: EpisodeResult) -> list[tuple[str, Path]]:
    """An episode's files as (path in the bundle, file on the host): its own, and for a team
    episode each worker's (BundleError when a worker's transcript is missing)."""
    folder = root / result.episode_id
    inside = f"{EPISODES}/{result.episode_id}"
    files = [(f"{inside}/{name}", folder / name) for name in EPISODE_FILES
             if (folder / name).is_file()]
    for index in range(result.team.workers if result.team is not None else 0):
        worker = folder / WORKERS / str(index)
        if not (worker / TRANSCRIPT).is_file():
            raise BundleError(f"{root}: team episode {result.episode_id} has no {TRANSCRIPT} "
                              f"for worker {index} ({worker}); a team's bundle holds every "
                              "worker's records: submit the run folder `rdbench run` wrote")
        files += [(f"{inside}/{WORKERS}/{index}/{name}", worker / name) for name in WORKER_FILES
                  if (worker / name).is_file()]
    return files


def _task_entries(names: list[str], results: list[EpisodeResult]) -> list[TaskEntry]:
    """Each task of the run as installed now; BundleError when one changed since it ran."""
    from rdbench.identity import task_content_hash
    from rdbench.task import TaskSpecError, get_task

    entries = []
    for task_name in names:
        try:
            spec = get_task(task_name)
        except TaskSpecError as error:
            raise BundleError(f"task {task_name} of the run is not installed: {error}") from error
        entry = TaskEntry(id=spec.id, version=spec.version,
                          content_hash=task_content_hash(spec.root))
        ran = {(result.task_version, result.task_hash) for result in results
               if result.task_id == spec.id}
        changed = ran - {(entry.version, entry.content_hash)}
        if changed:
            raise BundleError(
                f"task {spec.id} changed since the run: its episodes ran version/hash "
                f"{sorted(changed)}, installed is {entry.version}/{entry.content_hash[:12]}; "
                "submit a run made with the installed tasks"
            )
        entries.append(entry)
    return entries


def _agent_entry(choice: Any, results: list[EpisodeResult]) -> AgentEntry:
    """An agent (an arm) of the run with its options, model ids and scaffold (from its
    episodes: those of its agent and arm)."""
    options = dict(choice.options)
    models = [str(options["model"])] if options.get("model") else []
    scaffolds = {result.scaffold for result in results
                 if result.agent == choice.name and result.arm == choice.label}
    return AgentEntry(name=choice.name, arm=choice.label, options=options, models=models,
                      scaffold=_one_of(scaffolds, f"scaffold of agent {choice}"))


def _one_of(values: Iterable[str | None], what: str) -> str | None:
    """The one value the episodes agree on, None when none has one; BundleError otherwise."""
    found = {value for value in values if value}
    if len(found) > 1:
        raise BundleError(f"the run's episodes disagree on the {what}: {sorted(found)}; "
                          "a bundle holds one configuration")
    return found.pop() if found else None


def write_bundle(manifest: Manifest, files: dict[str, Path], out: Path) -> Path:
    """Write the bundle `out`: `manifest.json` and `files` (path in the bundle -> file on the
    host), sorted by path, as a deterministic gzipped tar (written to a temporary file next to
    `out`, then moved into place). The manifest is not checked against the files: tests use
    this to make tampered bundles."""
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest_bytes = (manifest.model_dump_json(indent=2) + "\n").encode()
    fd, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            members = [(MANIFEST, None), *sorted(files.items())]
            for inside, source in sorted(members, key=lambda item: item[0]):
                if source is None:
                    tar.addfile(_member(inside, len(manifest_bytes)), io.BytesIO(manifest_bytes))
                    continue
                with open(source, "rb") as stream:
                    size = os.fstat(stream.fileno()).st_size
                    tar.addfile(_member(inside, size), stream)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return out


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---- opening one -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleEpisode:
    """One episode of an opened bundle: its result and where its files were unpacked."""

    episode_id: str
    folder: Path
    result: EpisodeResult
    transcript_path: Path
    workspace_path: Path | None  # None: the episode left no workspace archive


class Bundle:
    """An opened bundle, unpacked in a temporary folder (`root`) that `close()` (or leaving
    the `with` block) removes. Its files are what the archive held; nothing is checked
    against the manifest here (that is rdbench.verify's job)."""

    def __init__(self, path: Path, root: Path, sha256: str):
        self.path = path
        self.root = root
        self.sha256 = sha256  # of the bundle file, hex
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest.json (BundleError when it is missing or not a manifest)."""
        if self._manifest is None:
            file = self.root / MANIFEST
            if not file.is_file():
                raise BundleError(f"{self.path}: no {MANIFEST}; it is not a bundle "
                                  "(make one with `rdbench submit`)")
            try:
                self._manifest = Manifest.model_validate_json(file.read_bytes())
            except ValueError as error:
                raise BundleError(f"{self.path}: {MANIFEST} is not a valid manifest: "
                                  f"{error}") from error
        return self._manifest

    def episode(self, episode_id: str) -> BundleEpisode:
        """The episode `episode_id` (BundleError when its folder or result.json is missing or
        unreadable)."""
        folder = self.root / EPISODES / episode_id
        if PurePosixPath(episode_id).name != episode_id or episode_id in ("", ".", ".."):
            raise BundleError(f"{self.path}: {episode_id!r} is not an episode id")
        if not folder.is_dir():
            raise BundleError(f"{self.path}: no folder {EPISODES}/{episode_id}")
        try:
            result = load_result(folder / RESULT)
        except RecordError as error:
            raise BundleError(f"{self.path}: episode {episode_id}: {error}") from error
        workspace = folder / WORKSPACE
        return BundleEpisode(
            episode_id=episode_id, folder=folder, result=result,
            transcript_path=folder / TRANSCRIPT,
            workspace_path=workspace if workspace.is_file() else None,
        )

    @property
    def episodes(self) -> list[BundleEpisode]:
        """Every episode the manifest lists, in its order (BundleError on the first one that
        cannot be read)."""
        return [self.episode(episode_id) for episode_id in self.manifest.episodes]

    def files(self) -> list[str]:
        """Every file unpacked, as its path in the bundle (sorted)."""
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*") if path.is_file()
        )

    def close(self) -> None:
        """Remove the unpacked files (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_bundle(
    path: str | Path,
    *,
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_BYTES,
    scratch: Path | None = None,
) -> Bundle:
    """Unpack the bundle at `path` safely into a temporary folder (under `scratch`, default
    the system's) and return it; use it as a context manager to remove the folder after.

    BundleError, naming the member, for anything but regular files and folders (links,
    devices, fifos), absolute paths, `..` components, duplicates, more than `max_members`
    members or more than `max_bytes` bytes in all, or an archive that is no gzipped tar."""
    source = Path(path)
    if not source.is_file():
        raise BundleError(f"{source}: no such bundle file (make one with `rdbench submit`)")
    digest = file_sha256(source)
    root = Path(tempfile.mkdtemp(prefix="rdbench-bundle-", dir=scratch))
    try:
        with open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            members = list(_checked_members(source, tar, max_members, max_bytes))
            for name, member in members:
                _extract(tar, name, member, root)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        shutil.rmtree(root, ignore_errors=True)
        raise BundleError(f"{source}: not a readable bundle (a gzipped tar): {error}") from error
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    log.debug("bundle.opened", path=str(source), members=len(members), root=str(root))
    return Bundle(source, root, digest)


def _checked_members(
    source: Path, tar: tarfile.TarFile, max_members: int, max_bytes: int
) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """The archive's members with their normalized paths, each checked before the next is
    read (so a huge member list stops at the limit)."""
    seen: set[str] = set()
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > max_members:
            raise BundleError(f"{source}: more than {max_members} members; a bundle holds "
                              "up to 4 files an episode, 3 more per team worker (split "
                              "a larger run into several bundles)")
        name = _safe_name(source, member)
        kind = ("regular file" if member.isreg() else "folder" if member.isdir() else None)
        if kind is None:
            what = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                    else "a fifo" if member.isfifo() else "a device" if member.isdev()
                    else "not a regular file")
            raise BundleError(f"{source}: member {member.name!r} is {what}; a bundle holds "
                              "only regular files (make it with `rdbench submit`)")
        if name in seen:
            raise BundleError(f"{source}: member {member.name!r} appears twice")
        seen.add(name)
        total += member.size
        if total > max_bytes:
            raise BundleError(f"{source}: its members hold more than {max_bytes} bytes "
                              "unpacked; refused")
        yield name, member


def _safe_name(source: Path, member: tarfile.TarInfo) -> str:
    """The member's path, relative and normalized; BundleError when it could leave the
    folder it is unpacked in."""
    raw = member.name
    if raw.startswith("/") or PurePosixPath(raw).is_absolute():
        raise BundleError(f"{source}: member {raw!r} has an absolute path; refused")
    parts = [part for part in PurePosixPath(raw).parts if part not in ("", ".")]
    if ".." in parts:
        raise BundleError(f"{source}: member {raw!r} has a '..' component; refused")
    if not parts or "\\" in raw or "\0" in raw:
        raise BundleError(f"{source}: member {raw!r} is not a usable path; refused")
    return "/".join(parts)


def _extract(tar: tarfile.TarFile, name: str, member: tarfile.TarInfo, root: Path) -> None:
    """Write one checked member under `root`: folders made, files created new (never through
    an existing path or link), with exactly the member's bytes."""
    target = root.joinpath(*name.split("/"))
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    stream: IO[bytes] | None = tar.extractfile(member)
    if stream is None:
        raise BundleError(f"member {member.name!r} has no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with stream, os.fdopen(os.open(target, flags, 0o644), "wb") as sink:
        shutil.copyfileobj(stream, sink, _CHUNK)
