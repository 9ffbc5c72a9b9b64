"""`rdbench task calibrate`: grade a task's start and reference workspaces several times,
report the spread, and write the anchors (and a timing task's verify tolerance) into its
task.toml, editing only those values.

The start workspace is workspace/ as an episode starts (with its declared grader files); the
reference is that with solution/ laid over it. Anchors are the medians of the raw test scores.
A task whose start anchor is a shortcut's level (its untouched workspace scores worse, see
[scoring] start in rdbench/task.py) keeps its start: calibration writes only what it
measured. So does a timing task whose start (timed against itself: 0 by construction)
measures within its tolerance of the anchor.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from rdbench.grading import SandboxFactory, default_factory, grade_workspace
from rdbench.starting_workspace import copy_starting_workspace
from rdbench.task import TaskSpec

log = structlog.get_logger()

TOLERANCE_FACTOR = 3.0
"""A timing task's regrade_tolerance is this many times the reference's normalized spread."""
MIN_TOLERANCE = 0.02
"""The smallest regrade_tolerance calibration writes for a timing task (normalized)."""


class CalibrationError(RuntimeError):
    """A start or reference grading was invalid: the task cannot be calibrated as it is."""


@dataclass(frozen=True)
class Calibration:
    """Raw test scores of repeated gradings of a task's start and reference workspaces."""

    task_id: str
    start: list[float]
    reference: list[float]
    timing: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def start_anchor(self) -> float:
        """The start anchor this calibration measured: the median start score."""
        return round(statistics.median(self.start), 6)

    @property
    def reference_anchor(self) -> float:
        """The reference anchor this calibration measured: the median reference score."""
        return round(statistics.median(self.reference), 6)

    def spread(self, scores: list[float]) -> float:
        """max - min of `scores` on the measured scale (start 0, reference 1)."""
        span = self.reference_anchor - self.start_anchor
        if span == 0:
            return float("inf")
        return (max(scores) - min(scores)) / abs(span)

    @property
    def tolerance(self) -> float:
        """The verify tolerance for a timing task: about 3x the reference's spread."""
        return round(max(MIN_TOLERANCE, TOLERANCE_FACTOR * self.spread(self.reference)), 2)


def grade_raw(task: TaskSpec, *, solution: bool, factory: SandboxFactory) -> float:
    """The raw test score of the start (or the reference) workspace, graded once."""
    which = "reference" if solution else "start"
    with tempfile.TemporaryDirectory(prefix="rdbench-calibrate-") as folder:
        workspace = copy_starting_workspace(task, Path(folder), solution=solution)
        grade = grade_workspace(task, workspace, split="test", factory=factory)
    if not grade.valid or grade.raw_score is None:
        raise CalibrationError(f"{task.id}: the {which} workspace was graded invalid: "
                               f"{grade.message}")
    log.info("calibrate.graded", task=task.id, which=which, raw=grade.raw_score)
    return grade.raw_score


def calibrate(
    task: TaskSpec,
    repeats: int,
    *,
    backend: str = "auto",
    on_grade: Callable[[str, int, float], None] | None = None,
) -> Calibration:
    """Grade `task`'s start and reference `repeats` times each on the test split.

    `on_grade(which, number, raw)` is called after each grading (for progress)."""
    if repeats < 1:
        raise ValueError(f"Expected repeats >= 1, got {repeats}")
    factory = default_factory(backend)
    scores: dict[str, list[float]] = {"start": [], "reference": []}
    for number in range(1, repeats + 1):
        for which in ("start", "reference"):
            raw = grade_raw(task, solution=which == "reference", factory=factory)
            scores[which].append(raw)
            if on_grade is not None:
                on_grade(which, number, raw)
    return Calibration(task.id, scores["start"], scores["reference"],
                       timing=is_timing_task(task.root / "task.toml"))


def is_timing_task(toml_path: Path) -> bool:
    """True when task.toml declares a regrade_tolerance (a timing task's verify tolerance)."""
    return _find(toml_path.read_text(encoding="utf-8"), "regrade_tolerance") is not None


def start_is_shortcut(task: TaskSpec, calibration: Calibration) -> bool:
    """True when the untouched workspace scores clearly worse than the start anchor: the
    anchor is a shortcut's level (set by the task's own tests), not the untouched score."""
    worse = calibration.start_anchor - task.scoring.start
    if task.scoring.direction == "higher":
        worse = -worse
    span = abs(task.scoring.reference - task.scoring.start)
    return worse > max(0.01 * span, calibration.spread(calibration.start) * span)


def write_calibration(task: TaskSpec, calibration: Calibration) -> list[str]:
    """Write the measured anchors (and, for a timing task, regrade_tolerance) into the task's
    task.toml, changing only those values; return what was written, one line each."""
    toml_path = task.root / "task.toml"
    text = toml_path.read_text(encoding="utf-8")
    values: dict[str, float] = {"reference": calibration.reference_anchor}
    written = []
    span = abs(calibration.reference_anchor - calibration.start_anchor)
    if start_is_shortcut(task, calibration):
        written.append(f"start kept at {task.scoring.start:g}: the untouched workspace scores "
                       f"{calibration.start_anchor:g}, worse (the anchor is a shortcut's level)")
    elif (calibration.timing
          and abs(calibration.start_anchor - task.scoring.start) <= calibration.tolerance * span):
        written.append(f"start kept at {task.scoring.start:g}: the measured "
                       f"{calibration.start_anchor:g} is within the timing noise")
    else:
        values["start"] = calibration.start_anchor
    if calibration.timing:
        values["regrade_tolerance"] = calibration.tolerance
    for key, value in values.items():
        text = set_scoring_value(text, key, value)
        written.append(f"{key} = {value:g}")
    toml_path.write_text(text, encoding="utf-8")
    return written


_LINE = re.compile(r"^(?P<head>\s*(?P<key>[A-Za-z_]+)\s*=\s*)(?P<value>[^#\n]*?)(?P<pad>\s*)"
                   r"(?P<tail>#.*)?$")


def _find(text: str, key: str) -> int | None:
    """The index of the line of `key` in task.toml's [scoring] table, or None."""
    section = None
    for number, line in enumerate(text.splitlines()):
        header = re.match(r"^\s*\[\[?([^\]]+)\]\]?", line)
        if header:
            section = header.group(1).strip()
            continue
        match = _LINE.match(line)
        if section == "scoring" and match and match.group("key") == key:
            return number
    return None


def set_scoring_value(text: str, key: str, value: float) -> str:
    """task.toml's `text` with [scoring] `key` set to `value`: only the value changes (its
    comment and the column the comment starts at are kept where the value fits)."""
    lines = text.splitlines(keepends=True)
    number = _find(text, key)
    if number is None:
        raise ValueError(f"task.toml has no [scoring] {key} to write; add `{key} = 0` first")
    line = lines[number]
    ending = line[len(line.rstrip("\r\n")):]
    match = _LINE.match(line.rstrip("\r\n"))
    assert match is not None
    new = repr(float(value))
    old = match.group("value") + match.group("pad")
    if match.group("tail"):
        new = new.ljust(len(old)) if len(new) < len(old) else new + " "
    lines[number] = match.group("head") + new + (match.group("tail") or "") + ending
    return "".join(lines)
