"""Team episodes (the team scaffold, rdbench.team): the team's record held against its
transcript and its workers' transcripts, and the choice of the worker whose workspace the
team submitted.

`check_team` (no sandbox): every worker the result declares is in the bundle; each worker's
transcript is checked as an episode's is (its reset, its numbered actions, its budget: the
worker's share, `rdbench.team.worker_budget`); the team's steps and usage are the workers'
sums; the chosen worker's ending and grade are the team's; the team's workspace archive is
the chosen worker's; the validation scores of the team's transcript are the record's; and the
chosen worker has the best recorded validation score (ties to the lowest index).

`check_team_validation` (re-grades): every worker's final workspace graded again on the
validation split in a fresh sandbox; each score must match the recorded one and the chosen
worker's must be the best, within the task's regrade tolerance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rdbench.bundle import file_sha256
from rdbench.grading import Grade, default_factory, grade_archive
from rdbench.identity import resolved_budget
from rdbench.infrastructure import InfrastructureFailure, retry_infrastructure
from rdbench.records import (
    EpisodeResult,
    Event,
    GradeEvent,
    RecordError,
    ResetEvent,
    ScaffoldEvent,
    SubmitEvent,
    TeamRecord,
    UsageEvent,
    UsageRecord,
)
from rdbench.submission import Finding, Manifest
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, TRANSCRIPT, WORKSPACE
from rdbench.verify_checks.base import (
    EXACT,
    BundleEpisode,
    CheckContext,
    finding,
    transcript_events,
)
from rdbench.verify_checks.consistency import (
    USAGE_FIELDS,
    Problem,
    close,
    episode_problems,
    outcome_problems,
    step_problems,
)
from rdbench.verify_checks.workers import WorkerFiles, team_workers


def best_worker(scores: list[float | None]) -> int:
    """The worker a team submits: the best validation score (None ranks last), ties to the
    lowest index (rdbench.team.choose's rule)."""
    return max(range(len(scores)),
               key=lambda index: (scores[index] is not None, scores[index] or 0.0, -index))


def check_team(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """A team episode's record against its transcript and its workers' (see the module's
    docstring); nothing for a single-agent episode."""
    result, record = episode.result, episode.result.team
    if record is None:
        return []
    events = transcript_events(episode)
    if isinstance(events, Finding):
        return []  # check_consistency reports it
    shape = _shape_problems(record)
    if shape:
        return [finding(code, message, episode, where) for code, message, where in shape]
    problems = [*_record_problems(record, result, events)]
    share = _worker_budget(result, task, record.workers)
    usages: list[UsageRecord] = []
    for worker in team_workers(episode):
        if worker.workspace is None and record.validation_scores[worker.index] is not None:
            problems.append(("team-worker-missing", f"worker {worker.index} has a validation "
                             f"score but no {WORKSPACE} in the bundle",
                             f"{worker.where}/{WORKSPACE}"))
        try:
            worker_events = worker.events()
        except RecordError as error:
            code = ("team-worker-missing" if not worker.transcript.is_file()
                    else "transcript-unreadable")
            problems.append((code, f"worker {worker.index}: {error}",
                             f"{worker.where}/{TRANSCRIPT}"))
            continue
        problems += _worker_problems(worker, worker_events, result, record, share, task)
        shown = [event for event in worker_events if isinstance(event, UsageEvent)]
        usages.append(shown[-1] if shown else UsageRecord())
    if len(usages) == record.workers:
        problems += _usage_sum_problems(usages, result)
    problems += _workspace_problems(episode, team_workers(episode)[record.chosen], record)
    return [finding(code, message, episode, where) for code, message, where in problems]


def _shape_problems(record: TeamRecord) -> list[Problem]:
    """The record's lists have one entry per worker and `chosen` is one of them."""
    sizes = {len(record.validation_scores), len(record.worker_steps)}
    if record.workers < 1 or sizes != {record.workers} or not 0 <= record.chosen < record.workers:
        return [("team-record-mismatch", f"result.json's team record is not one team: "
                 f"{record.workers} workers, {len(record.validation_scores)} validation "
                 f"scores, {len(record.worker_steps)} step counts, chosen {record.chosen}",
                 RESULT)]
    return []


def _record_problems(record: TeamRecord, result: EpisodeResult,
                     events: list[Event]) -> list[Problem]:
    """The team's transcript shows the record's validation scores and choice, the choice is
    the best recorded score, and the team's steps are the workers' sum."""
    problems: list[Problem] = []
    shown: dict[int, Any] = {
        event.worker: event.details.get("normalized_score") for event in events
        if isinstance(event, ScaffoldEvent) and event.action == "validation"
        and event.worker is not None}
    if set(shown) != set(range(record.workers)) or not all(
            close(shown[index], score) for index, score in enumerate(record.validation_scores)):
        problems.append(("team-record-mismatch", f"the team transcript's validation scores "
                         f"{[shown.get(index) for index in range(record.workers)]} are not "
                         f"result.json's {record.validation_scores}", TRANSCRIPT))
    grades = [event for event in events if isinstance(event, GradeEvent)]
    details = (grades[-1].details if grades else None) or {}
    if (details.get("chosen"), details.get("validation_scores")) != (
            record.chosen, record.validation_scores):
        problems.append(("team-record-mismatch", f"the team transcript's grade names worker "
                         f"{details.get('chosen')} with validation scores "
                         f"{details.get('validation_scores')}; result.json worker "
                         f"{record.chosen} with {record.validation_scores}", TRANSCRIPT))
    best = best_worker(record.validation_scores)
    if best != record.chosen:
        problems.append(("team-choice-wrong", f"result.json's team submitted worker "
                         f"{record.chosen}'s workspace (validation "
                         f"{record.validation_scores[record.chosen]}), but worker {best} has the "
                         f"best validation score ({record.validation_scores[best]})", RESULT))
    if sum(record.worker_steps) != result.steps:
        problems.append(("steps-mismatch", f"result.json says steps {result.steps}, its "
                         f"workers' steps {record.worker_steps} add up to "
                         f"{sum(record.worker_steps)}", RESULT))
    return problems


def _worker_budget(result: EpisodeResult, task: TaskSpec, size: int) -> dict[str, Any]:
    """One worker's budget as its env resolved it: 1/size of the team's (split_budget, the
    default) or the team's whole budget."""
    from rdbench.runner import EpisodeSpec
    from rdbench.team import worker_budget

    settings = result.scaffold_settings or {}
    if not settings.get("split_budget", True):
        return resolved_budget(task, result.budget)
    spec = EpisodeSpec(task=task, agent=result.agent, budget=dict(result.budget))
    return resolved_budget(task, worker_budget(spec, size))


def _worker_problems(
    worker: WorkerFiles, events: list[Event], result: EpisodeResult, record: TeamRecord,
    share: dict[str, Any], task: TaskSpec,
) -> list[Problem]:
    """One worker's transcript checked as an episode's, against what the team's result says
    of it (its steps, its share of the budget; the chosen one's ending and grade)."""
    chosen = worker.index == record.chosen
    mine = result.model_copy(update={"steps": record.worker_steps[worker.index],
                                     "budget": share, "team": None})
    found = [*episode_problems(events, mine), *step_problems(events, mine)]
    found += outcome_problems(events, mine) if chosen else _ending_problems(events, mine)
    found += _worker_budget_problems(events, mine)
    grades = [event for event in events if isinstance(event, GradeEvent)]
    if not grades:
        found.append(("grade-mismatch", "the worker's transcript holds no grade event",
                      TRANSCRIPT))
    elif chosen and not (close(grades[-1].raw_score, result.raw_score)
                         and close(grades[-1].normalized_score, result.normalized_score)
                         and grades[-1].valid == result.valid):
        found.append(("grade-mismatch", f"the chosen worker's grade (raw {grades[-1].raw_score}"
                      f", normalized {grades[-1].normalized_score}, valid {grades[-1].valid}) "
                      f"is not the team's in result.json (raw {result.raw_score}, normalized "
                      f"{result.normalized_score}, valid {result.valid})", TRANSCRIPT))
    prefix = f"{worker.where}/"
    return [(code, f"worker {worker.index}: {message}",
             prefix + where if where == TRANSCRIPT else where) for code, message, where in found]


def _ending_problems(events: list[Event], mine: EpisodeResult) -> list[Problem]:
    """A worker that was not chosen submitted at most once, at its last step."""
    submits = [event.step for event in events if isinstance(event, SubmitEvent)]
    if len(submits) > 1 or (submits and submits[0] != mine.steps):
        return [("outcome-mismatch", f"the transcript submits at steps {submits}, and its "
                 f"actions go on to step {mine.steps}", TRANSCRIPT)]
    return []


def _worker_budget_problems(events: list[Event], mine: EpisodeResult) -> list[Problem]:
    """The worker's reset shows its share of the budget, and it kept to the steps."""
    problems: list[Problem] = []
    resets = [event for event in events if isinstance(event, ResetEvent)]
    if resets and resets[0].budget != mine.budget:
        problems.append(("budget-mismatch", f"the worker's reset event shows budget "
                         f"{resets[0].budget}; its share of the team's is {mine.budget}",
                         TRANSCRIPT))
    steps = mine.budget.get("steps")
    if isinstance(steps, int) and mine.steps > steps:
        problems.append(("budget-exceeded", f"{mine.steps} steps, the worker's share allows "
                         f"{steps}", TRANSCRIPT))
    return problems


def _usage_sum_problems(usages: list[UsageRecord], result: EpisodeResult) -> list[Problem]:
    """result.json's usage is the workers' summed (their transcripts' last usage events)."""
    differing = [
        f"{name} {sum(float(getattr(usage, name)) for usage in usages):g} vs "
        f"{getattr(result.usage, name)!r}"
        for name in USAGE_FIELDS
        if abs(sum(float(getattr(usage, name)) for usage in usages)
               - float(getattr(result.usage, name))) > EXACT * max(1, len(usages))]
    if differing:
        return [("usage-mismatch", "the workers' usage summed vs result.json: "
                 + "; ".join(differing), RESULT)]
    return []


def _workspace_problems(episode: BundleEpisode, chosen: WorkerFiles,
                        record: TeamRecord) -> list[Problem]:
    """The team's workspace archive is the chosen worker's, byte for byte."""
    mine, theirs = episode.workspace_path, chosen.workspace
    if mine is None and theirs is None:
        return []
    if theirs is None:
        return [("team-worker-missing", f"worker {record.chosen} (chosen) has no "
                 f"{WORKSPACE} in the bundle", f"{chosen.where}/{WORKSPACE}")]
    if mine is None or file_sha256(mine) != file_sha256(theirs):
        return [("team-workspace-mismatch", f"the team's {WORKSPACE} is not worker "
                 f"{record.chosen}'s (the chosen one's)", WORKSPACE)]
    return []


def _validation_grade(task: TaskSpec, archive: Path, context: CheckContext,
                      labels: dict[str, str]) -> Grade:
    """`archive` graded on the validation split in a fresh sandbox (retried on a fault of
    the grading machinery; InfrastructureFailure after the last try)."""
    return retry_infrastructure(
        lambda: grade_archive(task, archive, split="validation",
                              factory=default_factory(context.backend), labels=labels),
        what="validation re-grading", wait=time.sleep, attempts=context.attempts,
    ).value


def check_team_validation(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """Every worker's final workspace re-graded on the validation split in a fresh sandbox:
    each must score its recorded validation score, and the chosen worker the best, within
    the task's regrade tolerance (1e-9 at least). Nothing for a single-agent episode, or a
    team record check_team already found malformed."""
    record = episode.result.team
    if record is None or _shape_problems(record):
        return []
    tolerance = max(task.scoring.regrade_tolerance, EXACT)
    found: list[Finding] = []
    scores: list[float | None] = []
    for worker in team_workers(episode):
        archive = worker.workspace
        if archive is None:
            scores.append(None)
            continue
        labels = {"rdbench.episode": episode.episode_id, "rdbench.worker": str(worker.index),
                  **context.labels}
        try:
            grade = _validation_grade(task, archive, context, labels)
        except InfrastructureFailure as failure:
            return [*found, finding("regrade-failed", f"worker {worker.index}: validation "
                                    f"re-grading failed: {failure}; the team's choice is not "
                                    "verified (run verify again)", episode,
                                    f"{worker.where}/{WORKSPACE}")]
        score = grade.normalized_score if grade.valid else None
        scores.append(score)
        claimed = record.validation_scores[worker.index]
        if (score is None) != (claimed is None) or (
                score is not None and claimed is not None and abs(score - claimed) > tolerance):
            found.append(finding("team-validation-mismatch", (
                f"worker {worker.index}: recorded validation score {claimed}; re-graded in a "
                f"fresh sandbox: {score} ({grade.message}); tolerance {tolerance:g}"), episode,
                f"{worker.where}/{WORKSPACE}"))
    chosen = scores[record.chosen]
    best = best_worker(scores)
    top = scores[best]
    if top is not None and (chosen is None or top - chosen > tolerance):
        found.append(finding("team-choice-wrong", (
            f"re-graded on validation, worker {best} scores {top}, better than the "
            f"chosen worker {record.chosen}'s {chosen} by more than the tolerance "
            f"{tolerance:g}"), episode, RESULT))
    return found
