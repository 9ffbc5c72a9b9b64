"""Grading: a workspace scored by the task's grader in a fresh sandbox, then normalized.

The grading sandbox holds only the workspace (in the agent's home, owned by the agent user)
and the grader's files (root-only). The grader runs as root and prints one JSON verdict.
An invalid or crashed submission is a valid grading with `valid: false` (normalized 0);
a failure of the machinery itself raises GradingError and is never the agent's 0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from rdbench.sandbox import hostdirs
from rdbench.sandbox.archive import pack_folder
from rdbench.sandbox.backend import make_sandbox
from rdbench.sandbox.base import (
    AGENT_HOME,
    GRADER_DIR,
    ArchiveError,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from rdbench.task import Scoring, TaskSpec
from rdbench.task_image import prepare_task_image

log = structlog.get_logger()

GRADING_KIT = Path(__file__).with_name("grading_kit.py")
Split = Literal["validation", "test"]
SandboxFactory = Callable[[SandboxConfig], Sandbox]


def install_grader(sandbox: Sandbox, task: TaskSpec) -> None:
    """Lay out the task's grader in `sandbox`'s /grader, root-only: grader/, the solution
    files task.toml's [grader] from_solution declares, and the grading kit as
    rdbench_grading.py."""
    sandbox.put_dir(str(task.grader_dir), GRADER_DIR, user="root")
    for target, source in task.grader_from_solution.items():
        sandbox.write_file(f"{GRADER_DIR}/{target}", source.read_bytes(), user="root")
    sandbox.write_file(f"{GRADER_DIR}/rdbench_grading.py", GRADING_KIT.read_bytes(), user="root")


class GradingError(RuntimeError):
    """The grading machinery failed (sandbox died, grader crashed): not the agent's fault."""


@dataclass(frozen=True)
class Grade:
    """The verdict on one workspace: the grader's raw score and its place on the task's scale."""

    raw_score: float | None
    valid: bool
    message: str
    normalized_score: float
    split: Split
    elapsed_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def normalize(raw_score: float | None, scoring: Scoring) -> float:
    """Put `raw_score` on the task's scale: start 0, reference 1, below 0 clipped to 0.

    Holds for lower-is-better metrics too: numerator and denominator change sign together.
    """
    if raw_score is None or not math.isfinite(raw_score):
        return 0.0
    span = scoring.reference - scoring.start
    return max(0.0, (raw_score - scoring.start) / span)


def parse_verdict(stdout: str) -> dict[str, Any]:
    """The grader's JSON verdict: the last line of stdout that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                verdict = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(verdict, dict) and {"raw_score", "valid", "message"} <= set(verdict):
                return verdict
    raise GradingError(f"The grader printed no JSON verdict; its output ended: {stdout[-500:]!r}")


def default_factory(backend: str = "auto", **options: Any) -> SandboxFactory:
    """A factory starting sandboxes of `backend` (with backend `options`)."""
    return lambda config: make_sandbox(backend, config, **options)


def refused_grade(split: Split, message: str, started: float | None = None) -> Grade:
    """The verdict on a workspace that could not be graded by its own fault (too large,
    not unpackable): invalid, normalized 0, with `message` saying why."""
    elapsed = 0.0 if started is None else round(time.monotonic() - started, 3)
    return Grade(raw_score=None, valid=False, message=message, normalized_score=0.0,
                 split=split, elapsed_s=elapsed)  # fmt: skip


def grade_workspace(
    task: TaskSpec,
    workspace: Path,
    *,
    split: Split = "test",
    factory: SandboxFactory | None = None,
    labels: dict[str, str] | None = None,
) -> Grade:
    """Grade the host folder `workspace` with `task`'s grader in a fresh sandbox.

    The folder is archived with the host's GNU tar (links stay links and are never followed)
    into a temporary file, which `grade_archive` grades. ArchiveError when it is no folder.
    """
    folder = hostdirs.make_dir("grade")
    try:
        archive = folder / "workspace.tar.gz"
        pack_folder(Path(workspace), archive)
        return grade_archive(task, archive, split=split, factory=factory, labels=labels)
    finally:
        hostdirs.remove(folder)


def grade_archive(
    task: TaskSpec,
    archive: Path,
    *,
    split: Split = "test",
    factory: SandboxFactory | None = None,
    labels: dict[str, str] | None = None,
) -> Grade:
    """Grade the workspace in the host's gzip tar `archive` in a fresh sandbox.

    The host never unpacks it: it is streamed into the grading sandbox and unpacked there by
    GNU tar as the agent user. A workspace that cannot be unpacked is an invalid grade that
    says why; a failure of the machinery raises GradingError.
    """
    factory = factory or default_factory()
    config = task.sandbox_config(grading=True, labels={"rdbench.role": "grading", **(labels or {})})
    started = time.monotonic()
    log.info("grade.start", task=task.id, split=split)
    try:
        prepare_task_image(task)  # a task with its own packages: its layer, if missing
        sandbox = factory(config)
    except SandboxError as error:
        raise GradingError(f"Could not start a grading sandbox: {error}") from error
    try:
        install_grader(sandbox, task)
        try:
            sandbox.import_archive(Path(archive), AGENT_HOME)
        except ArchiveError as error:
            log.info("grade.refused", task=task.id, split=split, reason=str(error))
            return refused_grade(split, str(error), started)
        result = sandbox.exec(
            ["python3", f"{GRADER_DIR}/score.py", "--workspace", AGENT_HOME], input=split.encode(),
            user="root",
            cwd=GRADER_DIR,
            timeout=task.scoring.timeout_s,
        )
    except SandboxError as error:
        raise GradingError(f"The grading sandbox failed: {error}") from error
    except OSError as error:  # the host could not read the archive
        raise GradingError(f"Could not send the workspace to the grading sandbox: {error}") \
            from error
    finally:
        sandbox.close()
    if result.timed_out:
        raise GradingError(f"The grader ran past [scoring] timeout_s={task.scoring.timeout_s}")
    if result.returncode != 0:
        raise GradingError(f"The grader crashed (exit {result.returncode}): {result.stderr[-800:]}")
    verdict = parse_verdict(result.stdout)
    raw = verdict["raw_score"]
    valid = bool(verdict["valid"]) and raw is not None
    grade = Grade(
        raw_score=float(raw) if raw is not None else None,
        valid=valid,
        message=str(verdict["message"]),
        normalized_score=normalize(raw, task.scoring) if valid else 0.0,
        split=split,
        elapsed_s=round(time.monotonic() - started, 3),
        details=verdict.get("details") or {},
    )
    log.info("grade.done", task=task.id, split=split, raw=grade.raw_score, valid=valid)
    return grade
