"""Check (2): the transcript held against result.json: the episode it is of, its steps, how
it ended, its usage totals, its final grade and its budget. A team episode's transcript
holds no actions (its workers' do): here only its usage, grade and budget are held against
result.json; check_team (team.py) checks the workers. The `*_problems` functions are shared
with it."""

from __future__ import annotations

import math

from rdbench.grading import normalize
from rdbench.identity import resolved_budget
from rdbench.records import (
    ActionEvent,
    EpisodeResult,
    ErrorEvent,
    Event,
    GradeEvent,
    ResetEvent,
    SubmitEvent,
    UsageEvent,
    UsageRecord,
)
from rdbench.submission import Finding, Manifest
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, TRANSCRIPT
from rdbench.verify_checks.base import (
    EXACT,
    BundleEpisode,
    CheckContext,
    finding,
    transcript_events,
)


def close(a: float | None, b: float | None) -> bool:
    """True when two scores (or None) are the same, to float noise."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0.0, abs_tol=EXACT) or (math.isnan(a) and math.isnan(b))


def check_consistency(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """The transcript agrees with result.json: the episode it is of, its steps, how it
    ended, its usage totals, its final grade, and its budget (the task's default with the
    run's declared overrides, and within it)."""
    events = transcript_events(episode)
    if isinstance(events, Finding):
        return [events]
    result = episode.result
    if result.team is not None:  # its actions are in its workers' transcripts: check_team
        problems = [*usage_problems(events, result), *grade_problems(events, result, task),
                    *budget_problems(events, result, task, manifest)]
    else:
        problems = [*episode_problems(events, result), *step_problems(events, result),
                    *outcome_problems(events, result), *usage_problems(events, result),
                    *grade_problems(events, result, task),
                    *budget_problems(events, result, task, manifest)]
    return [finding(code, message, episode, where) for code, message, where in problems]


Problem = tuple[str, str, str]
"""A finding's code, message and path, before it is made a Finding."""


def episode_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    """The reset event names the result's task, seed, tools and sandbox (one reset)."""
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


def step_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    """The actions are numbered 1, 2, ... and as many as result.json's steps."""
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


def outcome_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    """How the transcript ends (submit, limit, error) agrees with result.json's outcome."""
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
    steps = result.budget.get("steps")
    if result.limit_hit == "steps" and isinstance(steps, int) and result.steps < steps:
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


def usage_problems(events: list[Event], result: EpisodeResult) -> list[Problem]:
    """The last usage event holds result.json's usage totals."""
    usages = [event for event in events if isinstance(event, UsageEvent)]
    shown = usages[-1] if usages else UsageRecord()
    differing = [f"{name} {getattr(shown, name)!r} vs {getattr(result.usage, name)!r}"
                 for name in USAGE_FIELDS
                 if not close(float(getattr(shown, name)), float(getattr(result.usage, name)))]
    if differing:
        return [("usage-mismatch", "the transcript's last usage event vs result.json: "
                 + "; ".join(differing), RESULT)]
    return []


def grade_problems(events: list[Event], result: EpisodeResult, task: TaskSpec) -> list[Problem]:
    """The last grade event is result.json's, and its score is normalized on the task's scale."""
    problems: list[Problem] = []
    if result.outcome != "infrastructure_error":
        grades = [event for event in events if isinstance(event, GradeEvent)]
        if not grades:
            return [("grade-mismatch", "the transcript holds no grade event", TRANSCRIPT)]
        grade = grades[-1]
        if not (close(grade.raw_score, result.raw_score)
                and close(grade.normalized_score, result.normalized_score)
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
    if not close(result.normalized_score, expected):
        problems.append(("score-not-normalized", (
            f"result.json: raw {result.raw_score} (valid {result.valid}) is normalized "
            f"{expected} on the task's scale (start {task.scoring.start}, reference "
            f"{task.scoring.reference}), result.json says {result.normalized_score}"), RESULT))
    return problems


def budget_problems(
    events: list[Event], result: EpisodeResult, task: TaskSpec, manifest: Manifest
) -> list[Problem]:
    """result.json's budget is the task's default with the run's overrides, the reset event
    shows it, and the episode stayed within it."""
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


