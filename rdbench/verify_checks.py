"""The checks `rdbench verify` runs on every episode of a bundle: the final workspace re-graded
in a fresh sandbox, the transcript held against result.json, and a scan of the transcript and
the workspace for signs of gaming.

A check is a function `check(episode, task, manifest, context) -> list[Finding]`; `task` is
the task as installed on the verifying machine, `manifest` the bundle's (its `budgets` are the
run's declared budget overrides), and `context` carries the sandbox backend to grade with and
collects the re-graded scores (`context.regraded`). `DEFAULT_CHECKS` is every check, in the
order verify runs them.

Every finding has a stable code and, with it, a severity: reject (the bundle is rejected:
tampering that changes a score, or a read of protected files) or warning (a suspicious
pattern; the bundle is marked). `FINDING_CODES` holds the same table as data.

code                         severity  meaning
---------------------------- --------  ----------------------------------------------------------
regrade-mismatch             reject    the workspace re-graded in a fresh sandbox scores
                                       differently from the claim: by more than the task's
                                       [scoring] regrade_tolerance (1e-9 for a deterministic task),
                                       or valid where the claim is invalid or the other way round
regrade-failed               reject    the verifier could not re-grade the workspace (its grading
                                       machinery failed at each try): the score is not verified;
                                       run verify again
workspace-missing            reject    the episode claims a score above 0 but holds no workspace
                                       archive to re-grade
workspace-unreadable         reject    the workspace archive is no readable gzip tar, or unpacks to
                                       more than the task's workspace limit or 100,000 members
transcript-unreadable        reject    transcript.jsonl is missing, or a line of it is no
                                       transcript event
transcript-episode-mismatch  reject    the transcript's reset event names another task, seed, tool
                                       set or sandbox than result.json, or there is no reset event
                                       (or more than one)
steps-mismatch               reject    the transcript's actions (their number, or their step
                                       numbers 1, 2, ...) disagree with result.json's steps
outcome-mismatch             reject    how the transcript ends (a submit, a budget limit, an agent
                                       or infrastructure error) disagrees with result.json's
                                       outcome, terminated, truncated or limit_hit, or actions
                                       follow the submit
usage-mismatch               reject    the transcript's last usage event disagrees with
                                       result.json's usage totals (tokens, dollars, requests,
                                       retries)
grade-mismatch               reject    the transcript's final grade event disagrees with
                                       result.json's raw score, normalized score or validity, or
                                       there is none
score-not-normalized         reject    result.json's normalized score is not its raw score put on
                                       the task's scale (start 0, reference 1; 0 when invalid)
budget-mismatch              reject    result.json's budget is not the task's default with the
                                       run's declared overrides (manifest budgets), or not the
                                       budget the transcript's reset event shows
budget-exceeded              reject    the episode took more steps than its budget, or worked past
                                       its time budget by more than one command's timeout
budget-over-default          warning   the run gave the episode a larger budget (steps, time,
                                       tokens or dollars) than the task's default: declared, but
                                       its score is not comparable with default-budget runs
protected-read               reject    an action of the transcript, or a file of the final
                                       workspace, names a protected path: the grader's folder
                                       /grader (also as ../grader), another process's
                                       /proc/<pid>/environ or mem
interpreter-hook             reject    the final workspace holds a file Python runs at start-up:
                                       sitecustomize.py, usercustomize.py, or a text .pth file (a
                                       binary .pth, a PyTorch checkpoint, is data)
timer-patch                  reject    a file of the final workspace patches the timer or the
                                       interpreter: assigns, setattr()s or mock-patches
                                       time.perf_counter, process_time, monotonic, time, ... or
                                       resource.getrusage, names sitecustomize, or sets LD_PRELOAD
                                       or PYTHONSTARTUP
patch-attempt                warning   an action of the transcript does what timer-patch and
                                       interpreter-hook look for (writes a start-up hook, patches a
                                       time function, uses LD_PRELOAD or PYTHONSTARTUP); what
                                       reached the final workspace is reported by those
network-attempt              warning   an action of the transcript, or a file of the final
                                       workspace, uses the network: socket, urllib.request,
                                       requests, httpx, curl, wget, pip install, git clone
                                       (sandboxes have no network: the attempt is what is reported)
check-edited                 warning   the final workspace changed or removed a file the task ships
                                       as a check ([scoring] checks in task.toml, e.g.
                                       check_restrictions.py); the grader runs its own copy, so
                                       only the attempt is reported
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from rdbench.gaming import (
    ArchiveUnreadable,
    Hit,
    hook_file,
    is_text_code,
    read_members,
    scan_text,
    strings_of,
)
from rdbench.grading import default_factory, grade_archive, normalize
from rdbench.identity import resolved_budget
from rdbench.infrastructure import ATTEMPTS, InfrastructureFailure, retry_infrastructure
from rdbench.records import (
    ActionEvent,
    EpisodeResult,
    ErrorEvent,
    Event,
    GradeEvent,
    RecordError,
    ResetEvent,
    SubmitEvent,
    UsageEvent,
    UsageRecord,
    load_result,
)
from rdbench.submission import Finding, Manifest, RegradedEpisode, Severity
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, TRANSCRIPT, WORKSPACE, read_events

log = structlog.get_logger()

EXACT = 1e-9
"""How far two scores of a deterministic grading may differ (float noise)."""

FINDING_CODES: dict[str, tuple[Severity, str]] = {
    "regrade-mismatch": ("reject", (
        'the workspace re-graded in a fresh sandbox scores differently from the claim: by '
        "more than the task's [scoring] regrade_tolerance (1e-9 for a deterministic task), or"
        ' valid where the claim is invalid or the other way round'
    )),
    "regrade-failed": ("reject", (
        'the verifier could not re-grade the workspace (its grading machinery failed at each '
        'try): the score is not verified; run verify again'
    )),
    "workspace-missing": ("reject", (
        'the episode claims a score above 0 but holds no workspace archive to re-grade'
    )),
    "workspace-unreadable": ("reject", (
        "the workspace archive is no readable gzip tar, or unpacks to more than the task's "
        'workspace limit or 100,000 members'
    )),
    "transcript-unreadable": ("reject", (
        'transcript.jsonl is missing, or a line of it is no transcript event'
    )),
    "transcript-episode-mismatch": ("reject", (
        "the transcript's reset event names another task, seed, tool set or sandbox than "
        'result.json, or there is no reset event (or more than one)'
    )),
    "steps-mismatch": ("reject", (
        "the transcript's actions (their number, or their step numbers 1, 2, ...) disagree "
        "with result.json's steps"
    )),
    "outcome-mismatch": ("reject", (
        'how the transcript ends (a submit, a budget limit, an agent or infrastructure error)'
        " disagrees with result.json's outcome, terminated, truncated or limit_hit, or "
        'actions follow the submit'
    )),
    "usage-mismatch": ("reject", (
        "the transcript's last usage event disagrees with result.json's usage totals (tokens,"
        ' dollars, requests, retries)'
    )),
    "grade-mismatch": ("reject", (
        "the transcript's final grade event disagrees with result.json's raw score, "
        'normalized score or validity, or there is none'
    )),
    "score-not-normalized": ("reject", (
        "result.json's normalized score is not its raw score put on the task's scale (start "
        '0, reference 1; 0 when invalid)'
    )),
    "budget-mismatch": ("reject", (
        "result.json's budget is not the task's default with the run's declared overrides "
        "(manifest budgets), or not the budget the transcript's reset event shows"
    )),
    "budget-exceeded": ("reject", (
        'the episode took more steps than its budget, or worked past its time budget by more '
        "than one command's timeout"
    )),
    "budget-over-default": ("warning", (
        'the run gave the episode a larger budget (steps, time, tokens or dollars) than the '
        "task's default: declared, but its score is not comparable with default-budget runs"
    )),
    "protected-read": ("reject", (
        'an action of the transcript, or a file of the final workspace, names a protected '
        "path: the grader's folder /grader (also as ../grader), another process's "
        '/proc/<pid>/environ or mem'
    )),
    "interpreter-hook": ("reject", (
        'the final workspace holds a file Python runs at start-up: sitecustomize.py, '
        'usercustomize.py, or a text .pth file (a binary .pth, a PyTorch checkpoint, is data)'
    )),
    "timer-patch": ("reject", (
        'a file of the final workspace patches the timer or the interpreter: assigns, '
        'setattr()s or mock-patches time.perf_counter, process_time, monotonic, time, ... or '
        'resource.getrusage, names sitecustomize, or sets LD_PRELOAD or PYTHONSTARTUP'
    )),
    "patch-attempt": ("warning", (
        'an action of the transcript does what timer-patch and interpreter-hook look for '
        '(writes a start-up hook, patches a time function, uses LD_PRELOAD or PYTHONSTARTUP);'
        ' what reached the final workspace is reported by those'
    )),
    "network-attempt": ("warning", (
        'an action of the transcript, or a file of the final workspace, uses the network: '
        'socket, urllib.request, requests, httpx, curl, wget, pip install, git clone '
        '(sandboxes have no network: the attempt is what is reported)'
    )),
    "check-edited": ("warning", (
        'the final workspace changed or removed a file the task ships as a check ([scoring] '
        'checks in task.toml, e.g. check_restrictions.py); the grader runs its own copy, so '
        'only the attempt is reported'
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
    machinery failed is tried, and the re-graded scores the re-grade check appends (one per
    episode, for verified.json)."""

    backend: str = "auto"
    labels: dict[str, str] = field(default_factory=dict)
    attempts: int = ATTEMPTS
    regraded: list[RegradedEpisode] = field(default_factory=list)


Check = Callable[[BundleEpisode, TaskSpec, Manifest, CheckContext], list[Finding]]


def finding(code: str, message: str, episode: BundleEpisode, path: str | None = None) -> Finding:
    """A finding of `code` (its severity from FINDING_CODES) about `episode`."""
    severity, _ = FINDING_CODES[code]
    return Finding(code=code, severity=severity, message=message,
                   episode_id=episode.episode_id, path=path)


# --- (1) re-grade ----------------------------------------------------------------------------


def check_regrade(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """Grade the final workspace on the test split in a fresh sandbox and compare with the
    claimed normalized score (within the task's regrade_tolerance, 1e-9 at least). Appends the
    re-graded score to `context.regraded`. An infrastructure-error episode claims no score
    and is not re-graded."""
    result = episode.result
    tolerance = max(task.scoring.regrade_tolerance, EXACT)
    regraded = RegradedEpisode(
        episode_id=episode.episode_id, task_id=result.task_id, agent=result.agent,
        seed=result.seed, claimed_normalized=result.normalized_score,
        regraded_normalized=None, regraded_raw=None, valid=False, tolerance=tolerance,
    )
    if result.outcome == "infrastructure_error":
        context.regraded.append(regraded)
        return []
    if episode.workspace_path is None:
        context.regraded.append(regraded)
        if (result.normalized_score or 0.0) > 0.0:
            return [finding("workspace-missing", f"claims normalized score "
                            f"{result.normalized_score} but holds no {WORKSPACE} to re-grade",
                            episode, WORKSPACE)]
        return []
    archive = episode.workspace_path
    labels = {"rdbench.role": "verify", **context.labels}
    try:
        grade = retry_infrastructure(
            lambda: grade_archive(task, archive, split="test",
                                  factory=default_factory(context.backend), labels=labels),
            what="re-grading", wait=time.sleep, attempts=context.attempts,
        ).value
    except InfrastructureFailure as failure:
        context.regraded.append(regraded)
        return [finding("regrade-failed", f"re-grading failed: {failure}; the score is not "
                        "verified (run verify again)", episode, WORKSPACE)]
    context.regraded.append(regraded.model_copy(update={
        "regraded_normalized": grade.normalized_score, "regraded_raw": grade.raw_score,
        "valid": grade.valid}))
    log.info("verify.regraded", episode=episode.episode_id, claimed=result.normalized_score,
             regraded=grade.normalized_score)
    claimed = result.normalized_score
    off = claimed is None or abs(claimed - grade.normalized_score) > tolerance
    if off or grade.valid != result.valid:
        return [finding("regrade-mismatch", (
            f"claims normalized {claimed} (valid {result.valid}); re-graded in a fresh "
            f"sandbox: {grade.normalized_score:.6g} (raw {grade.raw_score}, valid "
            f"{grade.valid}: {grade.message}); tolerance {tolerance:g}"), episode, WORKSPACE)]
    return []


# --- (2) the transcript against the result ---------------------------------------------------


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0.0, abs_tol=EXACT) or (math.isnan(a) and math.isnan(b))


def _read(episode: BundleEpisode) -> list[Event] | Finding:
    try:
        if not episode.transcript_path.is_file():
            raise RecordError(f"{TRANSCRIPT} is missing")
        return read_events(episode.transcript_path.parent)
    except RecordError as error:
        return finding("transcript-unreadable", str(error), episode, TRANSCRIPT)


def check_consistency(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """The transcript agrees with result.json: the episode it is of, its steps, how it
    ended, its usage totals, its final grade, and its budget (the task's default with the
    run's declared overrides, and within it)."""
    events = _read(episode)
    if isinstance(events, Finding):
        return [events]
    result = episode.result
    found = [finding(code, message, episode, where) for code, message, where in (
        *_episode_problems(events, result),
        *_step_problems(events, result),
        *_outcome_problems(events, result),
        *_usage_problems(events, result),
        *_grade_problems(events, result, task),
        *_budget_problems(events, result, task, manifest),
    )]
    return found


Problem = tuple[str, str, str]
"""A finding's code, message and path, before it is made a Finding."""


def _episode_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    resets = [event for event in events if isinstance(event, ResetEvent)]
    if not resets:
        if result.outcome == "infrastructure_error" and result.steps == 0:
            return []  # the sandbox never started
        return [("transcript-episode-mismatch", "the transcript has no reset event", TRANSCRIPT)]
    reset = resets[0]
    problems = []
    for name, shown, claimed in (("task", reset.task_id, result.task_id),
                                 ("seed", reset.seed, result.seed),
                                 ("tools", reset.tools, result.tools),
                                 ("sandbox", reset.sandbox, result.sandbox)):
        if shown != claimed:
            problems.append(("transcript-episode-mismatch", f"the transcript's reset event "
                             f"has {name} {shown!r}, result.json {claimed!r}", TRANSCRIPT))
    if len(resets) > 1:
        problems.append(("transcript-episode-mismatch",
                         f"the transcript has {len(resets)} reset events", TRANSCRIPT))
    return problems


def _step_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    actions = [event.step for event in events if isinstance(event, ActionEvent)]
    if actions != list(range(1, len(actions) + 1)):
        return [("steps-mismatch", f"the transcript's actions are numbered {actions}, not "
                 "1, 2, ...", TRANSCRIPT)]
    if len(actions) != result.steps:
        return [("steps-mismatch", f"the transcript holds {len(actions)} actions, "
                 f"result.json says steps {result.steps}", RESULT)]
    last = max((event.step for event in events), default=0)
    if last != result.steps:
        return [("steps-mismatch", f"the transcript's last event is at step {last}, "
                 f"result.json says steps {result.steps}", TRANSCRIPT)]
    return []


def _outcome_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    submits = [event.step for event in events if isinstance(event, SubmitEvent)]
    errors = [event for event in events if isinstance(event, ErrorEvent)]
    problems = []

    def problem(message: str) -> None:
        problems.append(("outcome-mismatch", message, RESULT))

    if len(submits) > 1 or (submits and submits[0] != result.steps):
        problem(f"the transcript submits at steps {submits}, and its actions go on to step "
                f"{result.steps}")
    if (result.outcome == "submitted") != bool(submits):
        problem(f"result.json says outcome {result.outcome!r}, the transcript "
                f"{'submits' if submits else 'never submits'}")
    if result.terminated != bool(submits) or (result.truncated == result.terminated
                                              and result.steps > 0):
        ending = "submits" if submits else "ends unsubmitted"
        problem(f"result.json says terminated {result.terminated}, truncated "
                f"{result.truncated}; the transcript {ending}")
    if result.outcome == "limit" and not result.limit_hit:
        problem("result.json says outcome 'limit' but names no limit_hit")
    if result.limit_hit == "steps" and result.steps < int(result.budget.get("steps") or 0):
        problem(f"result.json says the steps limit ended it after {result.steps} of "
                f"{result.budget.get('steps')} steps")
    if result.outcome in ("agent_error", "no_action") and not any(e.agent for e in errors):
        problem(f"result.json says outcome {result.outcome!r}; the transcript records no "
                "agent error")
    if result.outcome == "infrastructure_error" and not any(e.infrastructure for e in errors):
        problem("result.json says outcome 'infrastructure_error'; the transcript records no "
                "infrastructure error")
    return problems


USAGE_FIELDS = tuple(name for name in UsageRecord.model_fields if name != "extra")


def _usage_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    usages = [event for event in events if isinstance(event, UsageEvent)]
    shown = usages[-1] if usages else UsageRecord()
    differing = [f"{name} {getattr(shown, name)!r} vs {getattr(result.usage, name)!r}"
                 for name in USAGE_FIELDS
                 if not _close(float(getattr(shown, name)), float(getattr(result.usage, name)))]
    if differing:
        return [("usage-mismatch", "the transcript's last usage event vs result.json: "
                 + "; ".join(differing), RESULT)]
    return []


def _grade_problems(events: list[Event], result: EpisodeResult, task: TaskSpec) -> list[Problem]:
    problems: list[Problem] = []
    if result.outcome != "infrastructure_error":
        grades = [event for event in events if isinstance(event, GradeEvent)]
        if not grades:
            return [("grade-mismatch", "the transcript holds no grade event", TRANSCRIPT)]
        grade = grades[-1]
        if not (_close(grade.raw_score, result.raw_score)
                and _close(grade.normalized_score, result.normalized_score)
                and grade.valid == result.valid):
            problems.append(("grade-mismatch", (
                f"the transcript's grade: raw {grade.raw_score}, normalized "
                f"{grade.normalized_score}, valid {grade.valid}; result.json: raw "
                f"{result.raw_score}, normalized {result.normalized_score}, valid "
                f"{result.valid}"), RESULT))
    if result.outcome == "infrastructure_error":
        expected = None
    else:
        expected = normalize(result.raw_score, task.scoring) if result.valid else 0.0
    if not _close(result.normalized_score, expected):
        problems.append(("score-not-normalized", (
            f"result.json: raw {result.raw_score} (valid {result.valid}) is normalized "
            f"{expected} on the task's scale (start {task.scoring.start}, reference "
            f"{task.scoring.reference}), result.json says {result.normalized_score}"), RESULT))
    return problems


def _budget_problems(
    events: list[Event], result: EpisodeResult, task: TaskSpec, manifest: Manifest
) -> list[Problem]:
    problems: list[Problem] = []
    try:
        expected = resolved_budget(task, manifest.budgets)
    except ValueError as error:
        return [("budget-mismatch", f"the run's declared budget overrides "
                 f"{manifest.budgets} are not a budget: {error}", "manifest.json")]
    if result.budget != expected:
        problems.append(("budget-mismatch", f"result.json's budget {result.budget} is not the "
                         f"task's default with the run's declared overrides {expected}", RESULT))
    resets = [event for event in events if isinstance(event, ResetEvent)]
    if resets and resets[0].budget != result.budget:
        problems.append(("budget-mismatch", f"the transcript's reset event shows budget "
                         f"{resets[0].budget}, result.json {result.budget}", TRANSCRIPT))
    steps = result.budget.get("steps")
    if isinstance(steps, int) and result.steps > steps:
        problems.append(("budget-exceeded", f"{result.steps} steps, the budget allows {steps}",
                         RESULT))
    time_s = result.budget.get("time_s")
    slack = max([task.sandbox.exec_timeout_s, *(tool.timeout_s for tool in task.tools)]) + 60
    if isinstance(time_s, int | float) and result.working_s > time_s + slack:
        problems.append(("budget-exceeded", f"worked {result.working_s:.0f} s, the budget "
                         f"allows {time_s:g} s (and one command's {slack:g} s past it)", RESULT))
    return problems


# --- (3) signs of gaming ---------------------------------------------------------------------


def check_budget_override(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """A warning for each budget the episode had that is larger than the task's default."""
    default = task.budget.model_dump()
    larger = []
    for name, base in default.items():
        given = episode.result.budget.get(name, base)
        if base is not None and (given is None or given > base):
            larger.append(f"{name} {given} (task default {base})")
    if larger:
        return [finding("budget-over-default", "the run raised the budget beyond the task's "
                        "default: " + ", ".join(larger), episode, RESULT)]
    return []


TRANSCRIPT_CODES = {"protected": "protected-read", "hook": "patch-attempt",
                    "timer": "patch-attempt", "network": "network-attempt"}
WORKSPACE_CODES = {"protected": "protected-read", "hook": "timer-patch", "timer": "timer-patch",
                   "network": "network-attempt"}


def _described(hit: Hit) -> str:
    return f"{hit.what}: `{hit.text}`"


def scan_transcript(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """Every action of the transcript scanned for reads of protected paths, timer or
    interpreter patching and network use; one finding per action and kind."""
    events = _read(episode)
    if isinstance(events, Finding):
        return []  # check_consistency reports it
    found = []
    for event in events:
        if not isinstance(event, ActionEvent):
            continue
        text = "\n".join([*strings_of(event.input or {}), event.raw or ""])
        by_code: dict[str, list[Hit]] = {}
        for hit in scan_text(text):
            by_code.setdefault(TRANSCRIPT_CODES[hit.kind], []).append(hit)
        for code, hits in by_code.items():
            found.append(finding(code, f"step {event.step} ({event.tool or 'malformed'} "
                                 f"action): " + "; ".join(map(_described, hits)), episode,
                                 f"{TRANSCRIPT} step {event.step}"))
    return found


def scan_workspace(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """The final workspace archive read as a stream: start-up hooks (sitecustomize.py,
    usercustomize.py, text .pth files), code that reads protected paths, patches the timer or
    uses the network, and the task's check files changed or removed."""
    archive = episode.workspace_path
    if archive is None:
        return []
    found = []
    checks = {name: (task.workspace_dir / name).read_bytes() for name in task.scoring.checks}
    seen: set[str] = set()
    try:
        for member in read_members(archive, task.sandbox.workspace_bytes):
            where = f"{WORKSPACE}:{member.path}"
            hook = hook_file(member.path, member.data)
            if hook:
                found.append(finding("interpreter-hook", hook, episode, where))
            if member.path in checks:
                seen.add(member.path)
                if member.data != checks[member.path]:
                    found.append(finding("check-edited", f"{member.path} differs from the "
                                         "task's copy (a check the grader runs its own copy "
                                         "of)", episode, where))
            text = is_text_code(member.path, member.data) if member.data is not None else None
            if text is None:
                continue
            by_code: dict[str, list[Hit]] = {}
            for hit in scan_text(text):
                by_code.setdefault(WORKSPACE_CODES[hit.kind], []).append(hit)
            for code, hits in by_code.items():
                found.append(finding(code, f"{member.path}: " + "; ".join(map(_described, hits)),
                                     episode, where))
    except ArchiveUnreadable as error:
        return [*found, finding("workspace-unreadable", f"{WORKSPACE}: {error}", episode,
                                WORKSPACE)]
    for name in sorted(set(checks) - seen):
        found.append(finding("check-edited", f"{name} was removed (a check the task ships)",
                             episode, f"{WORKSPACE}:{name}"))
    return found


DEFAULT_CHECKS: list[Check] = [
    check_consistency,
    check_budget_override,
    scan_transcript,
    scan_workspace,
    check_regrade,
]
"""Every check, in the order `rdbench verify` runs them (the slow re-grade last)."""


def run_checks(
    episode: BundleEpisode,
    task: TaskSpec,
    manifest: Manifest,
    context: CheckContext,
    checks: list[Check] | None = None,
) -> list[Finding]:
    """The findings of `checks` (default DEFAULT_CHECKS) on one episode, in order."""
    found: list[Finding] = []
    for check in DEFAULT_CHECKS if checks is None else checks:
        found.extend(check(episode, task, manifest, context))
    return found


__all__ = [
    "DEFAULT_CHECKS",
    "FINDING_CODES",
    "BundleEpisode",
    "Check",
    "CheckContext",
    "FolderEpisode",
    "check_budget_override",
    "check_consistency",
    "check_regrade",
    "finding",
    "run_checks",
    "scan_transcript",
    "scan_workspace",
]
