"""Check (1): the final workspace re-graded in a fresh sandbox against the claimed score."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from rdbench.grading import default_factory, grade_archive
from rdbench.infrastructure import InfrastructureFailure, retry_infrastructure
from rdbench.submission import Finding, Manifest, RegradedEpisode
from rdbench.task import TaskSpec
from rdbench.transcript import WORKSPACE
from rdbench.verify_checks.base import EXACT, BundleEpisode, CheckContext, finding
from rdbench.verify_checks.workers import team_workers

log = structlog.get_logger()


def _graded_archive(episode: BundleEpisode) -> Path | None:
    """The workspace archive whose grade the episode claims: the chosen worker's in a team
    episode (the team's own archive when the bundle lacks it), else the episode's."""
    team = episode.result.team
    if team is not None and 0 <= team.chosen < team.workers:
        chosen = team_workers(episode)[team.chosen].workspace
        if chosen is not None:
            return chosen
    return episode.workspace_path


def check_regrade(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """Grade the final workspace on the test split in a fresh sandbox and compare with the
    claimed normalized score (within the task's regrade_tolerance, 1e-9 at least). Appends the
    re-graded score to `context.regraded`. An infrastructure-error episode claims no score
    and is not re-graded. A team episode's graded workspace is its chosen worker's (check_team
    finds a team archive that is not that one)."""
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
    archive = _graded_archive(episode)
    if archive is None:
        context.regraded.append(regraded)
        if (result.normalized_score or 0.0) > 0.0:
            return [finding("workspace-missing", f"claims normalized score "
                            f"{result.normalized_score} but holds no {WORKSPACE} to re-grade",
                            episode, WORKSPACE)]
        return []
    labels = {"rdbench.episode": episode.episode_id, **context.labels}
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


