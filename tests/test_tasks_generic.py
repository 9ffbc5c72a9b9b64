"""The checks every task must pass, run over every discovered task (environments/, or the
task folders in RDBENCH_TEST_TASKS, os.pathsep-separated: `rdbench task test` sets it):

- anchors reproduce: the start and the reference workspaces' raw test scores are task.toml's
  anchors within the task's tolerance (a start anchor set at a shortcut's level, worse than
  the untouched workspace can be, only needs the untouched workspace to score 0; a timing
  task's reference anchor is a floor calibrated on a loaded machine: the reference must reach
  it within the tolerance, and may score above it on a faster one);
- the oracle (reference) scores >= 0.9 and the null agent (start) 0, on every backend;
- the validation and test splits grade differently (the reference, or else the start);
- agent code can read none of the grader's files;
- a symlink (to a grader file) or a FIFO in place of each file the reference solution
  changes is refused cleanly: an invalid verdict, or 0, or the reference's own score (the
  grader does not use that file), never a grading error and never another score.

Gradings are shared (helpers.WorkspaceGrader caches verdicts for the whole session), so the
tasks' own tests reuse the start and reference gradings made here. RDBENCH_TEST_BACKENDS
(comma-separated: docker, bwrap) narrows the backends.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

import pytest
from helpers import WorkspaceGrader

from rdbench.grading import GRADING_KIT
from rdbench.sandbox.base import AGENT_USER, GRADER_DIR
from rdbench.task import TaskSpec, discover_tasks, load_task

MIN_ORACLE = 0.9
DETERMINISTIC_TOLERANCE = 0.005
"""Anchor tolerance of a deterministic task, normalized: absorbs float differences only."""


def _tasks() -> list[TaskSpec]:
    given = os.environ.get("RDBENCH_TEST_TASKS")
    if given:
        return [load_task(folder) for folder in given.split(os.pathsep) if folder]
    return list(discover_tasks().values())


def _backends() -> list[str]:
    given = os.environ.get("RDBENCH_TEST_BACKENDS")
    return given.split(",") if given else ["docker", "bwrap"]


TASKS = {spec.id: spec for spec in _tasks()}
BACKENDS = _backends()
MARKS = {"docker": pytest.mark.docker, "bwrap": pytest.mark.bwrap}
LINK_BACKEND = "bwrap" if "bwrap" in BACKENDS else BACKENDS[0]


def _pairs() -> list[object]:
    return [pytest.param(task_id, backend, marks=[MARKS[backend], pytest.mark.slow],
                         id=f"{task_id}-{backend}")
            for task_id in TASKS for backend in BACKENDS]


def _tolerance(spec: TaskSpec) -> float:
    """The task's tolerance on raw scores: its verify tolerance for a timing task, else a
    deterministic grader's float slack; both normalized, times the anchors' span."""
    normalized = spec.scoring.regrade_tolerance or DETERMINISTIC_TOLERANCE
    return normalized * abs(spec.scoring.reference - spec.scoring.start)


def _changed_files(spec: TaskSpec) -> list[str]:
    """The files of the starting workspace (as an episode starts: laid out, with what it
    copies from the grader) that the reference solution replaces: the artifacts the grader
    reads or runs."""
    from rdbench.starting_workspace import copy_starting_workspace

    with tempfile.TemporaryDirectory(prefix="rdbench-generic-") as folder:
        start = copy_starting_workspace(spec, Path(folder))
        return sorted(
            str(path.relative_to(spec.solution_dir)) for path in spec.solution_dir.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
            and (start / path.relative_to(spec.solution_dir)).is_file()
        )


@pytest.fixture(scope="session")
def graders() -> dict[tuple[str, str], WorkspaceGrader]:
    """One WorkspaceGrader per (task, backend), made on first use."""
    return {}


def _grader(graders: dict[tuple[str, str], WorkspaceGrader], task_id: str, backend: str,
            tmp_path_factory: pytest.TempPathFactory) -> WorkspaceGrader:
    key = (task_id, backend)
    if key not in graders:
        graders[key] = WorkspaceGrader(TASKS[task_id].root, tmp_path_factory.mktemp(task_id),
                                       backend=backend)
    return graders[key]


@pytest.mark.parametrize(("task_id", "backend"), _pairs())
def test_anchors_reproduce_and_oracle_and_null_score_1_and_0(
    task_id: str, backend: str, graders: dict[tuple[str, str], WorkspaceGrader],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = TASKS[task_id]
    grade = _grader(graders, task_id, backend, tmp_path_factory)
    start, reference = grade(), grade(solution=True)
    assert start["valid"], start["message"]
    assert reference["valid"], reference["message"]
    tolerance = _tolerance(spec)
    if spec.scoring.regrade_tolerance:  # timing: the anchor is a floor measured under load,
        assert reference["normalized_score"] >= 1 - spec.scoring.regrade_tolerance  # faster ok
    else:
        assert reference["raw_score"] == pytest.approx(spec.scoring.reference, abs=tolerance)
    better = 1 if spec.scoring.direction == "higher" else -1
    if (start["raw_score"] - spec.scoring.start) * better >= -tolerance:  # not a shortcut's
        assert start["raw_score"] == pytest.approx(spec.scoring.start, abs=tolerance)
    assert reference["normalized_score"] >= MIN_ORACLE
    assert start["normalized_score"] <= (spec.scoring.regrade_tolerance
                                         or DETERMINISTIC_TOLERANCE)  # anchors are rounded


@pytest.mark.slow
@pytest.mark.parametrize("task_id", [pytest.param(task_id, marks=MARKS[BACKENDS[0]])
                                     for task_id in TASKS])
def test_validation_and_test_splits_grade_differently(
    task_id: str, graders: dict[tuple[str, str], WorkspaceGrader],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Compared on the reference's raw score (graded on test for its anchor already), or,
    where the reference scores the same on both (a floor, a perfect score), the start's."""
    grade = _grader(graders, task_id, BACKENDS[0], tmp_path_factory)
    for solution in (True, False):
        validation, test = grade(split="validation", solution=solution), grade(solution=solution)
        assert validation["valid"], validation["message"]
        if validation["raw_score"] != test["raw_score"]:
            return
    pytest.fail(f"{task_id}: the start and the reference score the same on both splits; "
                "the grader must draw the validation split's hidden data apart from the test's")


@pytest.mark.parametrize(("task_id", "backend"), _pairs())
def test_agent_code_cannot_read_the_graders_files(task_id: str, backend: str) -> None:
    """Lays the grader out as grading does, then tries, as the agent user, to list and open
    every one of its files."""
    from rdbench.grading import default_factory

    spec = TASKS[task_id]
    names = sorted(str(path.relative_to(spec.grader_dir)) for path in
                   spec.grader_dir.rglob("*") if path.is_file())
    probe = (
        "import os, sys\n"
        "found = []\n"
        f"try:\n    found += os.listdir({GRADER_DIR!r})\nexcept OSError:\n    pass\n"
        "for name in sys.argv[1:]:\n"
        f"    try:\n        open(os.path.join({GRADER_DIR!r}, name), 'rb').read(1)\n"
        "        found.append(name)\n    except OSError:\n        pass\n"
        "print('READ:' + ','.join(found))\n"
    )
    sandbox = default_factory(backend)(spec.sandbox_config(grading=True))
    try:
        sandbox.put_dir(str(spec.grader_dir), GRADER_DIR, user="root")
        sandbox.write_file(f"{GRADER_DIR}/rdbench_grading.py", GRADING_KIT.read_bytes(),
                           user="root")
        listed = sandbox.exec(["sh", "-c", f"ls {shlex.quote(GRADER_DIR)}"], user="root")
        assert "score.py" in listed.stdout  # the files are there, for root
        result = sandbox.exec(["python3", "-c", probe, *names, "rdbench_grading.py"],
                              user=AGENT_USER, cwd="/tmp")
    finally:
        sandbox.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "READ:", f"agent code listed or read: {result.stdout}"


def _link_cases() -> list[object]:
    return [pytest.param(task_id, name, kind, marks=[MARKS[LINK_BACKEND], pytest.mark.slow],
                         id=f"{task_id}-{name}-{kind}")
            for task_id, spec in TASKS.items() for name in _changed_files(spec)
            for kind in ("symlink", "fifo")]


@pytest.mark.parametrize(("task_id", "name", "kind"), _link_cases())
def test_a_link_or_fifo_in_place_of_a_file_the_grader_reads_is_refused(
    task_id: str, name: str, kind: str, graders: dict[tuple[str, str], WorkspaceGrader],
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
) -> None:
    from rdbench.grading import default_factory, grade_workspace
    from rdbench.starting_workspace import copy_starting_workspace

    spec = TASKS[task_id]
    grade = _grader(graders, task_id, LINK_BACKEND, tmp_path_factory)
    workspace = tmp_path / "workspace"
    copy_starting_workspace(spec, workspace, solution=True)
    target = workspace / name
    target.unlink()
    if kind == "symlink":
        target.symlink_to(f"{GRADER_DIR}/score.py")
    else:
        os.mkfifo(target)
    verdict = grade_workspace(spec, workspace, split="test",
                              factory=default_factory(LINK_BACKEND))  # never GradingError
    if not verdict.valid or verdict.normalized_score == 0:
        return
    reference = grade(solution=True)  # the file is not used: the reference's own score
    assert verdict.raw_score == pytest.approx(reference["raw_score"], abs=_tolerance(spec)), (
        f"{name} as a {kind} scored {verdict.raw_score}: {verdict.message}")
