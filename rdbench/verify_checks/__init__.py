"""The checks `rdbench verify` runs on every episode of a bundle: the final workspace re-graded
in a fresh sandbox, the transcript held against result.json, and a scan of the transcript and
the workspace for signs of gaming.

A check is a function `check(episode, task, manifest, context) -> list[Finding]`; `task` is
the task as installed on the verifying machine, `manifest` the bundle's (its `budgets` are the
run's declared budget overrides), and `context` carries the sandbox backend to grade with and
collects the re-graded scores (`context.regraded`). `DEFAULT_CHECKS` is every check, in the
order verify runs them; `run_checks` runs them on one episode.

base.py        the finding codes, the episode a check reads, the context, `finding`
regrade.py     (1) the final workspace re-graded and compared with the claim
consistency.py (2) the transcript held against result.json
scan.py        (3) signs of gaming in the transcript and the workspace; raised budgets
patterns.py    what the scan looks for, and the archive read as a stream
team.py        (4) a team episode: its workers' transcripts against its record, and the
               chosen worker the best on validation (re-graded)
relay.py       (5) a relay episode's notes in are its predecessor's notes out
workers.py     a team episode's workers' folders in the bundle

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
team-worker-missing          reject    a team episode's bundle lacks a worker's transcript, or the
                                       workspace archive of a worker with a validation score (or
                                       of the chosen one)
team-record-mismatch         reject    a team episode's record (result.json's team) is not one
                                       team (its lists are not one entry per worker, chosen is
                                       none of them), or the team transcript's validation scores
                                       or final grade name other scores or another chosen worker
team-choice-wrong            reject    the team submitted a worker's workspace other than the one
                                       with the best validation score (ties to the lowest index):
                                       by the recorded scores, or by the re-graded ones beyond the
                                       task's regrade tolerance
team-workspace-mismatch      reject    the team's workspace.tar.gz is not the chosen worker's
                                       workspace archive, byte for byte
team-validation-mismatch     reject    a worker's final workspace re-graded on the validation
                                       split in a fresh sandbox scores differently from its
                                       recorded validation score (beyond the task's regrade
                                       tolerance, or valid where recorded invalid or the other way
                                       round)
handoff-not-from-predecessor reject    a relay episode started with notes (its handoff_in event)
                                       that are not its predecessor's handoff.md in the bundle
                                       (the same configuration's episode with the previous seed):
                                       notes from elsewhere, or there is no such predecessor
handoff-file-mismatch        reject    an episode's handoff.md is not the notes its transcript's
                                       handoff_out event records (or it has one without the event,
                                       or the event without the file)
"""

from __future__ import annotations

from rdbench.submission import Finding, Manifest
from rdbench.task import TaskSpec
from rdbench.verify_checks.base import (
    FINDING_CODES,
    BundleEpisode,
    Check,
    CheckContext,
    FolderEpisode,
    finding,
)
from rdbench.verify_checks.consistency import check_consistency
from rdbench.verify_checks.regrade import check_regrade
from rdbench.verify_checks.relay import check_handoff
from rdbench.verify_checks.scan import check_budget_override, scan_transcript, scan_workspace
from rdbench.verify_checks.team import check_team, check_team_validation

DEFAULT_CHECKS: list[Check] = [
    check_consistency,
    check_team,
    check_handoff,
    check_budget_override,
    scan_transcript,
    scan_workspace,
    check_team_validation,
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
    "check_handoff",
    "check_regrade",
    "check_team",
    "check_team_validation",
    "finding",
    "run_checks",
    "scan_transcript",
    "scan_workspace",
]
