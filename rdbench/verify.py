"""Verify a leaderboard bundle: `verify_bundle(path)` opens it safely, checks every file
against the manifest's hashes, checks the tasks against the installed ones, runs the episode
checks (re-grading, transcript consistency, gaming scan: rdbench.verify_checks) on every
episode, and returns the VerifiedReport that `rdbench verify` writes as verified.json.

Finding codes of this module (docs/leaderboard.md explains each; all reject a bundle but
image-mismatch, a warning): file-missing, file-modified, file-extra, episode-missing,
episode-extra, episode-unreadable, episode-id-mismatch, transcript-missing, task-unknown,
task-version-mismatch, task-hash-mismatch, task-not-in-manifest, image-mismatch,
check-failed, manifest-path-unsafe. An episode with one of the episode-level findings
(unreadable, no transcript) is not given to the episode checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from rdbench.bundle import (
    Bundle,
    BundleEpisode,
    file_sha256,
    open_bundle,
)
from rdbench.submission import (
    EPISODES,
    MANIFEST,
    Finding,
    Manifest,
    VerifiedReport,
    verdict_of,
)
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, TRANSCRIPT
from rdbench.verify_checks import DEFAULT_CHECKS, CheckContext

log = structlog.get_logger()

Check = Callable[[BundleEpisode, TaskSpec, Manifest, Any], list[Finding]]
"""An episode check (rdbench.verify_checks): (episode, task, manifest, context) -> findings."""


def verify_bundle(
    path: str | Path,
    *,
    checks: Sequence[Check] | None = None,
    backend: str = "auto",
    tasks: Mapping[str, TaskSpec] | None = None,
) -> VerifiedReport:
    """Verify the bundle at `path` and return the report (its verdict from the findings).

    `checks` are the episode checks to run (None: rdbench.verify_checks.DEFAULT_CHECKS);
    `backend` the sandbox backend re-grading uses; `tasks` the installed tasks by id (None:
    the shipped ones). An episode whose task is unknown or changed is not checked further (its
    task finding already rejects the bundle). BundleError when the bundle cannot be opened
    safely or has no valid manifest."""
    from rdbench import __version__
    from rdbench.image import image_inputs_hash, image_tag
    from rdbench.task import discover_tasks

    source = Path(path)
    installed = dict(tasks) if tasks is not None else discover_tasks()
    default_checks, context = _checks_and_context(backend)
    chosen = list(checks) if checks is not None else default_checks
    with open_bundle(source) as bundle:
        manifest = bundle.manifest
        findings = hash_findings(bundle, manifest)
        problems = task_problems(manifest, installed)
        findings += [finding for found in problems.values() for finding in found]
        episodes, episode_problems = _readable_episodes(bundle, manifest)
        findings += episode_problems
        context.episodes = list(episodes)  # a relay episode's predecessor is among them
        findings += coverage_findings(manifest, [episode.result for episode in episodes])
        findings += result_task_findings(manifest, episodes)
        findings += image_findings(manifest, episodes)
        checkable = {entry.id: installed[entry.id] for entry in manifest.tasks
                     if entry.id in installed and not problems[entry.id]}
        for episode in episodes:
            task = checkable.get(episode.result.task_id)
            if task is None:
                continue
            for check in chosen:
                findings += _run_check(check, episode, task, manifest, context)
        report = VerifiedReport(
            bundle=source.name,
            bundle_sha256=bundle.sha256,
            name=manifest.name,
            verdict=verdict_of(findings),
            findings=findings,
            episodes=list(getattr(context, "regraded", [])),
            verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
            verifier_rdbench_version=__version__,
            verifier_image_tag=image_tag(),
            verifier_image_hash=image_inputs_hash(),
        )
    log.info("bundle.verified", bundle=str(source), verdict=report.verdict,
             findings=len(findings))
    return report


def _checks_and_context(backend: str) -> tuple[list[Check], CheckContext]:
    """The default episode checks and a fresh CheckContext for them."""
    return list(DEFAULT_CHECKS), CheckContext(backend=backend)


def _run_check(check: Check, episode: BundleEpisode, task: TaskSpec, manifest: Manifest,
               context: Any) -> list[Finding]:
    """One check's findings; a check that fails (e.g. re-grading's sandbox died) is a reject
    finding, since the episode could not be verified."""
    try:
        return list(check(episode, task, manifest, context))
    except Exception as error:  # any failure of a check leaves the episode unverified
        name = getattr(check, "__name__", repr(check))
        log.warning("verify.check_failed", check=name, episode=episode.episode_id,
                    error=str(error))
        return [Finding(
            code="check-failed", severity="reject", episode_id=episode.episode_id,
            message=f"check {name} could not run ({type(error).__name__}: {error}); the "
            "episode is unverified. Run `rdbench verify` again; if it fails again, report it",
        )]


def hash_findings(bundle: Bundle, manifest: Manifest) -> list[Finding]:
    """Every manifest file present with its size and SHA-256, no file the manifest does not
    name, every listed episode's folder there and no other."""
    findings: list[Finding] = []
    listed = {entry.path for entry in manifest.files}
    for entry in manifest.files:
        if not _inside(entry.path):
            findings.append(Finding(
                code="manifest-path-unsafe", severity="reject", path=entry.path,
                message=f"the manifest names the file {entry.path!r}, a path outside the "
                "bundle's layout"))
            continue
        file = bundle.root / entry.path
        episode = _episode_of(entry.path)
        if not file.is_file():
            findings.append(Finding(
                code="file-missing", severity="reject", episode_id=episode, path=entry.path,
                message=f"{entry.path} is in the manifest but not in the bundle"))
        elif file.stat().st_size != entry.size or file_sha256(file) != entry.sha256:
            findings.append(Finding(
                code="file-modified", severity="reject", episode_id=episode, path=entry.path,
                message=f"{entry.path} does not match the manifest's SHA-256: it was changed "
                "after the bundle was made"))
    for name in bundle.files():
        if name != MANIFEST and name not in listed:
            findings.append(Finding(
                code="file-extra", severity="reject", episode_id=_episode_of(name), path=name,
                message=f"{name} is in the bundle but not in the manifest"))
    episodes_dir = bundle.root / EPISODES
    present = {path.name for path in episodes_dir.iterdir()} if episodes_dir.is_dir() else set()
    for episode_id in sorted(set(manifest.episodes)):
        if not _inside(f"{EPISODES}/{episode_id}") or "/" in episode_id:
            findings.append(Finding(
                code="manifest-path-unsafe", severity="reject", path=episode_id,
                message=f"the manifest names the episode {episode_id!r}, not a folder name"))
        elif episode_id not in present:
            findings.append(Finding(
                code="episode-missing", severity="reject", episode_id=episode_id,
                path=f"{EPISODES}/{episode_id}",
                message=f"episode {episode_id} is in the manifest but has no folder"))
    for episode_id in sorted(present - set(manifest.episodes)):
        findings.append(Finding(
            code="episode-extra", severity="reject", episode_id=episode_id,
            path=f"{EPISODES}/{episode_id}",
            message=f"{EPISODES}/{episode_id} is in the bundle but not in the manifest's "
            "episodes"))
    return findings


def _inside(path: str) -> bool:
    """True for a plain relative path in the bundle (no absolute path, `.` or `..` parts)."""
    parts = path.split("/")
    return (bool(path) and not path.startswith("/") and "\\" not in path and "\0" not in path
            and all(part not in ("", ".", "..") for part in parts))


def _episode_of(inside: str) -> str | None:
    """The episode id a bundle path belongs to, if it is under episodes/<id>/."""
    parts = inside.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == EPISODES else None


def task_problems(
    manifest: Manifest, installed: Mapping[str, TaskSpec]
) -> dict[str, list[Finding]]:
    """Per task of the manifest, the findings against the installed tasks (none: it is
    installed here at the same version and content hash)."""
    from rdbench.identity import task_content_hash

    problems: dict[str, list[Finding]] = {}
    for entry in manifest.tasks:
        findings = problems.setdefault(entry.id, [])
        spec = installed.get(entry.id)
        if spec is None:
            findings.append(Finding(
                code="task-unknown", severity="reject",
                message=f"task {entry.id} is not installed here; the leaderboard verifies "
                f"only its own tasks (installed: {', '.join(sorted(installed)) or 'none'})"))
            continue
        if spec.version != entry.version:
            findings.append(Finding(
                code="task-version-mismatch", severity="reject",
                message=f"task {entry.id}: the bundle ran version {entry.version}, "
                f"installed is {spec.version}"))
        content = task_content_hash(spec.root)
        if content != entry.content_hash:
            findings.append(Finding(
                code="task-hash-mismatch", severity="reject",
                message=f"task {entry.id}: the manifest's content hash "
                f"{entry.content_hash[:12]} differs from the installed task's "
                f"{content[:12]}; the run used another version of the task's files"))
    return problems


def _readable_episodes(bundle: Bundle, manifest: Manifest) -> tuple[list[BundleEpisode],
                                                                    list[Finding]]:
    """The manifest's episodes that can be read, and a finding for each that cannot, or
    that lacks a file every episode must have."""
    from rdbench.bundle import BundleError

    episodes: list[BundleEpisode] = []
    findings: list[Finding] = []
    for episode_id in manifest.episodes:
        if "/" in episode_id or not _inside(f"{EPISODES}/{episode_id}") or not (
            bundle.root / EPISODES / episode_id
        ).is_dir():
            continue  # manifest-path-unsafe or episode-missing already says so
        try:
            episode = bundle.episode(episode_id)
        except BundleError as error:
            findings.append(Finding(
                code="episode-unreadable", severity="reject", episode_id=episode_id,
                path=f"{EPISODES}/{episode_id}/{RESULT}", message=str(error)))
            continue
        if episode.result.episode_id != episode_id:
            findings.append(Finding(
                code="episode-id-mismatch", severity="reject", episode_id=episode_id,
                path=f"{EPISODES}/{episode_id}/{RESULT}",
                message=f"the result in folder {episode_id} is episode "
                f"{episode.result.episode_id}"))
        if not episode.transcript_path.is_file():
            findings.append(Finding(
                code="transcript-missing", severity="reject", episode_id=episode_id,
                path=f"{EPISODES}/{episode_id}/{TRANSCRIPT}",
                message=f"episode {episode_id} has no {TRANSCRIPT}; every episode needs one"))
            continue
        episodes.append(episode)
    return episodes, findings


def coverage_findings(manifest: Manifest, results: Sequence[Any]) -> list[Finding]:
    """Every task x agent x seed the manifest declares has an episode (no run left out)."""
    from rdbench.identity import canonical_json

    have = {(result.task_id, result.agent, canonical_json(result.agent_options), result.seed)
            for result in results}
    findings: list[Finding] = []
    for task in manifest.tasks:
        for agent in manifest.agents:
            for seed in manifest.seeds:
                if (task.id, agent.name, canonical_json(agent.options), seed) not in have:
                    findings.append(Finding(
                        code="episode-missing", severity="reject",
                        message=f"no readable episode of task {task.id}, agent {agent.name}, "
                        f"seed {seed}: the manifest declares it (a bundle holds every "
                        "episode of its run, not a selection)"))
    return findings


def result_task_findings(manifest: Manifest, episodes: Sequence[BundleEpisode]) -> list[Finding]:
    """Each episode's task is in the manifest, at the manifest's version and content hash."""
    tasks = {entry.id: entry for entry in manifest.tasks}
    findings: list[Finding] = []
    for episode in episodes:
        result = episode.result
        where = f"{EPISODES}/{episode.episode_id}/{RESULT}"
        entry = tasks.get(result.task_id)
        if entry is None:
            findings.append(Finding(
                code="task-not-in-manifest", severity="reject", episode_id=episode.episode_id,
                path=where, message=f"episode {episode.episode_id} ran task {result.task_id}, "
                "which the manifest does not list"))
        elif (result.task_version, result.task_hash) != (entry.version, entry.content_hash):
            findings.append(Finding(
                code="task-hash-mismatch", severity="reject", episode_id=episode.episode_id,
                path=where, message=f"episode {episode.episode_id} ran task {result.task_id} "
                f"{result.task_version}/{result.task_hash[:12]}, the manifest says "
                f"{entry.version}/{entry.content_hash[:12]}"))
    return findings


def image_findings(manifest: Manifest, episodes: Sequence[BundleEpisode]) -> list[Finding]:
    """A warning for each episode run on another sandbox image than the manifest names."""
    return [
        Finding(code="image-mismatch", severity="warning", episode_id=episode.episode_id,
                path=f"{EPISODES}/{episode.episode_id}/{RESULT}",
                message=f"episode {episode.episode_id} ran image {episode.result.image}, the "
                f"manifest names {manifest.image_tag}")
        for episode in episodes
        if episode.result.image and episode.result.image != manifest.image_tag
    ]
