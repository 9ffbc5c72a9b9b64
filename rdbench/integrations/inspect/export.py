"""rdbench episodes as Inspect eval logs, for Inspect's viewer (`inspect view`) and readers
(`inspect_ai.log.read_eval_log`): `rdbench export inspect RUN -o logs/`.

Each finished episode of a run (a folder with a result.json) becomes one log with one sample:
its messages (system prompt, briefing, the model's turns with their thinking and tool calls,
each tool's output as the agent saw it), its final score (the normalized score as the value;
the raw score, validity and grader's message in the score's metadata), its model usage, the
task's id and version, the agent with its options, the seed, the timing, and the validation
scores (as intermediate score events, and listed in the sample's metadata).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import structlog
from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalError,
    EvalLog,
    EvalMetric,
    EvalPlan,
    EvalPlanStep,
    EvalResults,
    EvalSample,
    EvalSampleLimit,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.log._log import EvalSampleLimitType
from inspect_ai.model import ModelOutput
from inspect_ai.scorer import Score
from pydantic import ValidationError

from rdbench.integrations.inspect._messages import SCORER, convert, model_usage, score_value
from rdbench.records import EpisodeResult, RecordError, load_result
from rdbench.transcript import RESULT, TRANSCRIPT, read_events

log = structlog.get_logger()

LogFormat = Literal["eval", "json"]
LIMITS: dict[str, EvalSampleLimitType] = {
    "steps": "message", "time_s": "working", "tokens": "token", "cost_usd": "cost",
}


class ExportError(ValueError):
    """What was given cannot be exported; the message names the file and says why."""


@dataclass
class Exported:
    """What an export wrote, and the episode folders it left out (not finished)."""

    logs: list[Path] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def episode_folders(run: Path) -> tuple[list[Path], list[str]]:
    """The finished episode folders of the run folder `run` (or `run` itself when it is an
    episode folder), and the names of the unfinished ones. ExportError if it is neither."""
    if not run.is_dir():
        raise ExportError(f"{run}: not a folder; give a run's folder (its --out, e.g. "
                          "runs/NAME) or one episode's folder")
    if (run / RESULT).is_file():
        return [run], []
    finished, unfinished = [], []
    for folder in sorted(path for path in run.iterdir() if path.is_dir()):
        if folder.name.startswith("."):
            continue
        if (folder / RESULT).is_file():
            finished.append(folder)
        elif (folder / TRANSCRIPT).is_file():
            unfinished.append(folder.name)
    if not finished:
        raise ExportError(f"{run}: not an rdbench run folder (no episode folder in it holds a "
                          f"{RESULT}); give the folder `rdbench run --out` wrote, e.g. runs/NAME")
    return finished, unfinished


def _model_name(result: EpisodeResult, models: list[str]) -> str:
    """Inspect's provider/model name for the episode's agent."""
    model = models[-1] if models else result.agent_options.get("model")
    return f"{result.agent}/{model}" if model else f"rdbench/{result.agent}"


def _packages() -> dict[str, str]:
    found = {}
    for name in ("rdbench", "inspect_ai"):
        try:
            found[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return found


def episode_log(folder: Path) -> EvalLog:
    """The Inspect eval log of the episode in `folder` (RecordError naming the file when its
    result.json or transcript.jsonl is not a valid record)."""
    result = load_result(folder / RESULT)
    conversion = convert(read_events(folder))
    model = _model_name(result, conversion.models)
    usage = model_usage(result.usage)
    model_usages = {model: usage} if usage.total_tokens or usage.total_cost else {}
    infrastructure = result.outcome == "infrastructure_error"
    scores: dict[str, Score] | None = None
    if not infrastructure:
        scores = {SCORER: score_value(
            result.normalized_score, result.raw_score, result.valid, result.message,
            outcome=result.outcome)}
    assistant = [message for message in conversion.messages if message.role == "assistant"]
    output = (ModelOutput.from_message(assistant[-1]) if assistant
              else ModelOutput(model=model))
    limit = None
    if result.limit_hit is not None:
        value = result.budget.get(result.limit_hit)
        limit = EvalSampleLimit(type=LIMITS.get(result.limit_hit, "custom"),
                                limit=float(value) if isinstance(value, int | float) else 0.0,
                                reason=result.limit_hit)
    metadata = {
        "task_id": result.task_id, "task_version": result.task_version,
        "task_hash": result.task_hash, "agent": result.agent,
        "agent_options": result.agent_options, "scaffold": result.scaffold,
        "scaffold_settings": result.scaffold_settings, "arm": result.arm, "seed": result.seed,
        "tools": result.tools, "tool_variants": result.tool_variants, "budget": result.budget,
        "sandbox": result.sandbox, "image": result.image, "identity": result.identity,
        "outcome": result.outcome, "steps": result.steps, "limit_hit": result.limit_hit,
        "agent_error": result.agent_error, "infrastructure_error": result.infrastructure_error,
        "grading_s": result.grading_s, "usage": result.usage.model_dump(),
        "validation_scores": conversion.validation,
        "team": result.team.model_dump() if result.team else None,
    }
    sample = EvalSample(
        id=result.episode_id, epoch=1, input=conversion.briefing or result.task_id, target="",
        messages=conversion.messages, output=output, scores=scores, metadata=metadata,
        events=conversion.events, model_usage=model_usages, started_at=result.started_at,
        completed_at=result.finished_at, total_time=result.elapsed_s,
        working_time=result.working_s, limit=limit,
        error=_error(result.infrastructure_error) if infrastructure else None,
    )
    value = result.normalized_score
    results = EvalResults(
        total_samples=1, completed_samples=0 if infrastructure else 1,
        scores=[] if infrastructure else [EvalScore(
            name=SCORER, scorer=SCORER, scored_samples=1, unscored_samples=0,
            metrics={"mean": EvalMetric(name="mean", value=value if value is not None else 0.0)},
            metadata={"raw_score": result.raw_score, "valid": result.valid})],
    )
    spec = EvalSpec(
        eval_id=result.episode_id, run_id=result.run_id, created=result.started_at,
        task=f"rdbench/{result.task_id}", task_id=result.identity,
        task_version=result.task_version, task_display_name=result.task_id,
        task_args={"seed": result.seed}, solver=result.scaffold or result.agent,
        solver_args=result.agent_options, dataset=EvalDataset(
            name=result.task_id, samples=1, sample_ids=[result.episode_id]),
        model=model, config=EvalConfig(), packages=_packages(),
        metadata={"rdbench_version": result.rdbench_version, "sandbox": result.sandbox,
                  "image": result.image, "budget": result.budget, "arm": result.arm},
    )
    return EvalLog(
        status="error" if infrastructure else "success", eval=spec,
        plan=EvalPlan(steps=[EvalPlanStep(solver=result.agent, params=result.agent_options)]),
        results=results, samples=[sample],
        stats=EvalStats(started_at=result.started_at, completed_at=result.finished_at,
                        model_usage=model_usages),
        error=_error(result.infrastructure_error) if infrastructure else None,
    )


def _error(message: str | None) -> EvalError:
    """An infrastructure error as Inspect's EvalError (it has no traceback: rdbench records
    the message)."""
    text = message or "infrastructure error"
    return EvalError(message=text, traceback=text, traceback_ansi=text)


def one_line(error: Exception) -> str:
    """A record error on one line: its first line, with a validation error's problems
    (field: what was wrong) in place of pydantic's multi-line report."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__
    head = str(error).splitlines()[0] if str(error) else type(error).__name__
    if cause is None:
        return head
    title = str(cause).splitlines()[0]
    head = head.replace(title, "").rstrip(": ")
    problems = "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                         for problem in cause.errors())
    return f"{head}: {problems}"


def log_name(result_folder: Path, suffix: str) -> str:
    """The log's file name: the episode's folder name, safe on every filesystem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", result_folder.name) + f".{suffix}"


def export_run(run: str | Path, out: str | Path, *, log_format: LogFormat = "eval") -> Exported:
    """Write one Inspect eval log per finished episode of the run folder `run` into `out`.

    Raises ExportError (naming the file) when `run` is not a run or episode folder, or when an
    episode's records are malformed; nothing is written for a run with a malformed episode.
    """
    folders, unfinished = episode_folders(Path(run))
    logs = []
    for folder in folders:
        try:
            logs.append((folder, episode_log(folder)))
        except RecordError as error:
            raise ExportError(one_line(error)) from error
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    exported = Exported(unfinished=unfinished)
    for folder, eval_log in logs:
        path = target / log_name(folder, log_format)
        write_eval_log(eval_log, path, format=log_format)
        log.info("inspect.export", episode=folder.name, log=str(path))
        exported.logs.append(path)
    return exported
