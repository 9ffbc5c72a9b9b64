"""What every verify check shares: the finding codes and their severities, the episode a
check reads (`BundleEpisode`, and `FolderEpisode` for a run's folder), the `CheckContext`, and
`finding`, which makes a Finding of a code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rdbench.infrastructure import ATTEMPTS
from rdbench.records import EpisodeResult, Event, RecordError, load_result
from rdbench.submission import Finding, Manifest, RegradedEpisode, Severity
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, TRANSCRIPT, WORKSPACE, read_events

EXACT = 1e-9
"""How far two scores of a deterministic grading may differ (float noise)."""

FINDING_CODES: dict[str, tuple[Severity, str]] = {
    "regrade-mismatch": ("reject", (
        "the workspace re-graded in a fresh sandbox scores differently from the claim: by "
        "more than the task's [scoring] regrade_tolerance (1e-9 for a deterministic task), or"
        " valid where the claim is invalid or the other way round"
    )),
    "regrade-failed": ("reject", (
        "the verifier could not re-grade the workspace (its grading machinery failed at each "
        "try): the score is not verified; run verify again"
    )),
    "workspace-missing": ("reject", (
        "the episode claims a score above 0 but holds no workspace archive to re-grade"
    )),
    "workspace-unreadable": ("reject", (
        "the workspace archive is no readable gzip tar, or unpacks to more than the task's "
        "workspace limit or 100,000 members"
    )),
    "transcript-unreadable": ("reject", (
        "transcript.jsonl is missing, or a line of it is no transcript event"
    )),
    "transcript-episode-mismatch": ("reject", (
        "the transcript's reset event names another task, seed, tool set or sandbox than "
        "result.json, or there is no reset event (or more than one)"
    )),
    "steps-mismatch": ("reject", (
        "the transcript's actions (their number, or their step numbers 1, 2, ...) disagree "
        "with result.json's steps"
    )),
    "outcome-mismatch": ("reject", (
        "how the transcript ends (a submit, a budget limit, an agent or infrastructure error)"
        " disagrees with result.json's outcome, terminated, truncated or limit_hit, or "
        "actions follow the submit"
    )),
    "usage-mismatch": ("reject", (
        "the transcript's last usage event disagrees with result.json's usage totals (tokens,"
        " dollars, requests, retries)"
    )),
    "grade-mismatch": ("reject", (
        "the transcript's final grade event disagrees with result.json's raw score, "
        "normalized score or validity, or there is none"
    )),
    "score-not-normalized": ("reject", (
        "result.json's normalized score is not its raw score put on the task's scale (start "
        "0, reference 1; 0 when invalid)"
    )),
    "budget-mismatch": ("reject", (
        "result.json's budget is not the task's default with the run's declared overrides "
        "(manifest budgets), or not the budget the transcript's reset event shows"
    )),
    "budget-exceeded": ("reject", (
        "the episode took more steps than its budget, or worked past its time budget by more "
        "than one command's timeout"
    )),
    "budget-over-default": ("warning", (
        "the run gave the episode a larger budget (steps, time, tokens or dollars) than the "
        "task's default: declared, but its score is not comparable with default-budget runs"
    )),
    "protected-read": ("reject", (
        "an action of the transcript, or a file of the final workspace, names a protected "
        "path: the grader's folder /grader (also as ../grader), another process's "
        "/proc/<pid>/environ or mem"
    )),
    "interpreter-hook": ("reject", (
        "the final workspace holds a file Python runs at start-up: sitecustomize.py, "
        "usercustomize.py, or a text .pth file (a binary .pth, a PyTorch checkpoint, is data)"
    )),
    "timer-patch": ("reject", (
        "a file of the final workspace patches the timer or the interpreter: assigns, "
        "setattr()s or mock-patches time.perf_counter, process_time, monotonic, time, ... or "
        "resource.getrusage, names sitecustomize, or sets LD_PRELOAD or PYTHONSTARTUP"
    )),
    "patch-attempt": ("warning", (
        "an action of the transcript does what timer-patch and interpreter-hook look for "
        "(writes a start-up hook, patches a time function, uses LD_PRELOAD or PYTHONSTARTUP);"
        " what reached the final workspace is reported by those"
    )),
    "network-attempt": ("warning", (
        "an action of the transcript, or a file of the final workspace, uses the network: "
        "socket, urllib.request, requests, httpx, curl, wget, pip install, git clone "
        "(sandboxes have no network: the attempt is what is reported)"
    )),
    "check-edited": ("warning", (
        "the final workspace changed or removed a file the task ships as a check ([scoring] "
        "checks in task.toml, e.g. check_restrictions.py); the grader runs its own copy, so "
        "only the attempt is reported"
    )),
    "team-worker-missing": ("reject", (
        "a team episode's bundle lacks a worker's transcript, or the workspace archive of a "
        "worker with a validation score (or of the chosen one)"
    )),
    "team-record-mismatch": ("reject", (
        "a team episode's record (result.json's team) is not one team (its lists are not one "
        "entry per worker, chosen is none of them), or the team transcript's validation "
        "scores or final grade name other scores or another chosen worker"
    )),
    "team-choice-wrong": ("reject", (
        "the team submitted a worker's workspace other than the one with the best validation "
        "score (ties to the lowest index): by the recorded scores, or by the re-graded ones "
        "beyond the task's regrade tolerance"
    )),
    "team-workspace-mismatch": ("reject", (
        "the team's workspace.tar.gz is not the chosen worker's workspace archive, byte for "
        "byte"
    )),
    "team-validation-mismatch": ("reject", (
        "a worker's final workspace re-graded on the validation split in a fresh sandbox "
        "scores differently from its recorded validation score (beyond the task's regrade "
        "tolerance, or valid where recorded invalid or the other way round)"
    )),
    "handoff-not-from-predecessor": ("reject", (
        "a relay episode started with notes (its handoff_in event) that are not its "
        "predecessor's handoff.md in the bundle (the same configuration's episode with the "
        "previous seed): notes from elsewhere, or there is no such predecessor"
    )),
    "handoff-file-mismatch": ("reject", (
        "an episode's handoff.md is not the notes its transcript's handoff_out event records "
        "(or it has one without the event, or the event without the file)"
    )),
}
"""Every finding code: its severity and what it means (the module docstring's table)."""


class BundleEpisode(Protocol):
    """One episode as a check reads it (rdbench.bundle gives these for a bundle;
    `FolderEpisode` for an episode folder of a run)."""

    @property
    def episode_id(self) -> str:
        """The episode's id (its folder's name)."""

    @property
    def folder(self) -> Path:
        """The episode's folder."""

    @property
    def result(self) -> EpisodeResult:
        """Its result.json."""

    @property
    def transcript_path(self) -> Path:
        """Its transcript.jsonl."""

    @property
    def workspace_path(self) -> Path | None:
        """Its workspace.tar.gz, or None when the episode left none."""


@dataclass(frozen=True)
class FolderEpisode:
    """An episode folder of a run (`rdbench run --out`), read as a check reads a bundle's."""

    episode_id: str
    folder: Path
    result: EpisodeResult
    transcript_path: Path
    workspace_path: Path | None

    @classmethod
    def read(cls, folder: Path) -> FolderEpisode:
        """The episode in `folder` (RecordError if its result.json is not readable)."""
        archive = folder / WORKSPACE
        return cls(episode_id=folder.name, folder=folder, result=load_result(folder / RESULT),
                   transcript_path=folder / TRANSCRIPT,
                   workspace_path=archive if archive.is_file() else None)


@dataclass
class CheckContext:
    """What the checks share: the sandbox backend re-grading uses ("auto": docker where an
    engine answers, else bwrap), labels for its sandboxes, how many times a re-grading whose
    machinery failed is tried, the re-graded scores the re-grade check appends (one per
    episode, for verified.json), and every readable episode of the bundle (`episodes`: a
    relay episode's predecessor is looked up among them; empty, the episode alone)."""

    backend: str = "auto"
    labels: dict[str, str] = field(default_factory=dict)
    attempts: int = ATTEMPTS
    regraded: list[RegradedEpisode] = field(default_factory=list)
    episodes: list[BundleEpisode] = field(default_factory=list)


Check = Callable[[BundleEpisode, TaskSpec, Manifest, CheckContext], list[Finding]]


def finding(code: str, message: str, episode: BundleEpisode, path: str | None = None) -> Finding:
    """A finding of `code` (its severity from FINDING_CODES) about `episode`."""
    severity, _ = FINDING_CODES[code]
    return Finding(code=code, severity=severity, message=message,
                   episode_id=episode.episode_id, path=path)


def transcript_events(episode: BundleEpisode) -> list[Event] | Finding:
    """The episode's transcript events, or the transcript-unreadable finding saying why not."""
    try:
        if not episode.transcript_path.is_file():
            raise RecordError(f"{TRANSCRIPT} is missing")
        return read_events(episode.transcript_path.parent)
    except RecordError as error:
        return finding("transcript-unreadable", str(error), episode, TRANSCRIPT)
