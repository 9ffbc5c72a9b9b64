"""What the leaderboard reads: submissions, each a set of finished episodes (result and
transcript), the bundle's manifest when there is one, and the verifier's report when one was
given or lies next to it (`bundle.tar.gz` + `bundle.verified.json`).

Inputs are bundles (`rdbench submit`), run folders (`rdbench run --out`) and verified.json
files. Everything is read into memory here, so a bundle's temporary folder may go once
`load_inputs` returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydantic import ValidationError

from rdbench.bundle import open_bundle
from rdbench.records import EpisodeResult, Event, RecordError, load_result
from rdbench.submission import Manifest, VerifiedReport
from rdbench.transcript import read_events

log = structlog.get_logger()

BUNDLE_SUFFIX = ".tar.gz"
VERIFIED_SUFFIX = ".verified.json"


class LeaderboardInputError(ValueError):
    """An input is not a bundle, a run folder or a verified.json; the message says which."""


@dataclass(frozen=True)
class SubmissionEpisode:
    """One finished episode of a submission: its result and its transcript's events."""

    episode_id: str
    result: EpisodeResult
    events: list[Event]


@dataclass
class Submission:
    """One submission: a bundle or a run folder, its episodes and, when verified, the report.

    `verified` None means nobody verified it: it is shown apart and marked."""

    name: str
    source: Path
    episodes: list[SubmissionEpisode]
    manifest: Manifest | None = None
    verified: VerifiedReport | None = None
    problems: list[str] = field(default_factory=list)  # episodes that could not be read

    @property
    def status(self) -> str:
        """verified, verified with warnings, rejected, or unverified."""
        return self.verified.verdict if self.verified is not None else "unverified"


def load_inputs(paths: list[Path]) -> list[Submission]:
    """The submissions the paths give: bundles and run folders, with their verified.json
    (next to them, or given among `paths` and matched by the bundle's file name)."""
    reports: list[tuple[Path, VerifiedReport]] = []
    sources: list[Path] = []
    for path in paths:
        if path.is_file() and path.name.endswith(".json"):
            reports.append((path, read_verified(path)))
        elif path.is_dir() or path.name.endswith(BUNDLE_SUFFIX):
            sources.append(path)
        elif not path.exists():
            raise LeaderboardInputError(f"{path}: no such file or folder")
        else:
            raise LeaderboardInputError(
                f"{path}: not a bundle (*.tar.gz), a run folder or a verified.json; give "
                "what `rdbench submit`, `rdbench run --out` or `rdbench verify -o` made"
            )
    for report_path, report in reports:  # a report given alone: its bundle lies beside it
        if any(source.name == report.bundle for source in sources):
            continue
        beside = report_path.parent / report.bundle
        if not beside.exists():
            raise LeaderboardInputError(
                f"{report_path} is the report of {report.bundle}, which is neither given nor "
                f"beside it; give the bundle too"
            )
        sources.append(beside)
    submissions = []
    for source in sources:
        submission = read_source(source)
        submission.verified = _report_for(source, submission, reports)
        submissions.append(submission)
    return submissions


def read_source(path: Path) -> Submission:
    """The submission a bundle or a run folder holds (unverified)."""
    if path.is_dir():
        return read_run_folder(path)
    return read_bundle(path)


def read_verified(path: Path) -> VerifiedReport:
    """The VerifiedReport in `path` (LeaderboardInputError saying what is wrong)."""
    try:
        return VerifiedReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as error:
        raise LeaderboardInputError(
            f"{path}: not a verified.json written by `rdbench verify` ({error})"
        ) from error


def verified_path(source: Path) -> Path:
    """Where the verified.json of a bundle or run folder lies: `NAME.verified.json` beside
    `NAME.tar.gz` (or beside the run folder NAME)."""
    name = source.name.removesuffix(BUNDLE_SUFFIX)
    return source.parent / f"{name}{VERIFIED_SUFFIX}"


def _report_for(
    source: Path, submission: Submission, given: list[tuple[Path, VerifiedReport]]
) -> VerifiedReport | None:
    for report_path, report in given:
        if report.bundle == source.name or (report_path.parent / report.bundle).resolve() == \
                source.resolve():
            return _checked(report, report_path, source)
    beside = verified_path(source)
    if beside.is_file():
        return _checked(read_verified(beside), beside, source)
    return None


def _checked(report: VerifiedReport, report_path: Path, source: Path) -> VerifiedReport:
    """The report, if it is about `source` (for a bundle: the same SHA-256)."""
    if source.is_file():
        import hashlib

        digest = hashlib.sha256()
        with source.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != report.bundle_sha256:
            raise LeaderboardInputError(
                f"{report_path} is about another bundle than {source} (its bundle_sha256 "
                "differs): verify this bundle again with `rdbench verify`"
            )
    return report


def read_run_folder(folder: Path) -> Submission:
    """A run folder's finished episodes as an (unverified) submission named after it."""
    episodes, problems = [], []
    for episode in sorted(path for path in folder.iterdir() if path.is_dir()):
        if episode.name.startswith(".") or not (episode / "result.json").exists():
            continue
        try:
            episodes.append(_episode(episode, load_result(episode)))
        except RecordError as error:
            problems.append(str(error))
    if not episodes:
        raise LeaderboardInputError(
            f"{folder}: no finished episode (no <episode>/result.json); give a run folder "
            "`rdbench run --out` wrote"
        )
    return Submission(name=folder.name, source=folder, episodes=episodes, problems=problems)


def _episode(folder: Path, result: EpisodeResult) -> SubmissionEpisode:
    return SubmissionEpisode(episode_id=result.episode_id, result=result,
                             events=read_events(folder))


def read_bundle(path: Path) -> Submission:
    """A bundle's manifest and episodes (LeaderboardInputError naming what was wrong)."""
    try:  # BundleError and RecordError are ValueErrors that name what was wrong
        with open_bundle(path) as bundle:
            episodes = [
                SubmissionEpisode(episode_id=episode.episode_id, result=episode.result,
                                  events=read_events(Path(episode.transcript_path).parent))
                for episode in bundle.episodes
            ]
            manifest: Manifest = bundle.manifest
    except ValueError as error:
        raise LeaderboardInputError(f"{path}: {error}") from error
    log.info("leaderboard.bundle_read", bundle=str(path), episodes=len(episodes))
    return Submission(name=manifest.name, source=path, episodes=episodes, manifest=manifest)
