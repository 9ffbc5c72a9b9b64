"""Authors' commands: `rdbench task new` makes a skeleton that passes `task check`, `task test`
(the generic suite and its own tests) and `task calibrate --write`; the skeleton scores
oracle 1 and null 0; calibration edits only the values it writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdbench.authoring import Calibration, new_task, write_calibration
from rdbench.authoring.calibrate import set_scoring_value
from rdbench.cli import app
from rdbench.starting_workspace import copy_starting_workspace
from rdbench.task import TaskSpecError, load_task

runner = CliRunner()


def test_task_new_makes_a_folder_task_check_accepts(tmp_path: Path) -> None:
    made = runner.invoke(app, ["task", "new", "demo-task", "--into", str(tmp_path)])
    assert made.exit_code == 0, made.output
    root = tmp_path / "demo-task"
    for name in ("task.toml", "instructions.md", "workspace/predict.py", "solution/predict.py",
                 "grader/score.py", "tests/test_demo_task.py"):
        assert (root / name).is_file(), name
    checked = runner.invoke(app, ["task", "check", str(root)])
    assert checked.exit_code == 0, checked.output
    assert "ok demo-task" in checked.output


def test_task_new_defaults_to_environments_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "environments").mkdir()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["task", "new", "here-task"]).exit_code == 0
    assert (tmp_path / "environments" / "here-task" / "task.toml").is_file()


def test_task_new_refuses_a_bad_id_and_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(TaskSpecError, match="not a task id"):
        new_task("Demo_Task", tmp_path)
    new_task("demo-task", tmp_path)
    again = runner.invoke(app, ["task", "new", "demo-task", "--into", str(tmp_path)])
    assert again.exit_code == 1
    assert "already exists" in again.output


TOML = """\
id = "x"  # keep me

[scoring]
metric = "m"
direction = "higher"        # comment
start = 0.0                 # the start
reference = 2.2             # the reference
regrade_tolerance = 0.08    # verify

[[tools]]
start = 5
"""


def test_set_scoring_value_changes_only_that_value() -> None:
    text = set_scoring_value(TOML, "reference", 2.31)
    changed = [(old, new) for old, new in zip(TOML.splitlines(), text.splitlines(), strict=True)
               if old != new]
    assert changed == [("reference = 2.2             # the reference",
                        "reference = 2.31            # the reference")]
    assert set_scoring_value(TOML, "start", 0.123456789).splitlines()[-1] == "start = 5"
    with pytest.raises(ValueError, match="no \\[scoring\\] timeout_s"):
        set_scoring_value(TOML, "timeout_s", 1.0)


def test_write_calibration_keeps_a_shortcut_start_and_writes_a_timing_tolerance(
    tmp_path: Path,
) -> None:
    root = new_task("demo-task", tmp_path)
    toml = root / "task.toml"
    text = toml.read_text().replace("start = 0.485", "start = 0.6  ")
    toml.write_text(text.replace("timeout_s = 120", "timeout_s = 120\nregrade_tolerance = 0.5"))
    spec = load_task(root)
    written = write_calibration(
        spec, Calibration("demo-task", [0.485, 0.485], [0.99, 1.0, 0.97], timing=True))
    after = load_task(root).scoring
    assert after.start == 0.6  # the untouched workspace scores worse: a shortcut's level
    assert after.reference == 0.99
    assert after.regrade_tolerance == pytest.approx(round(3 * 0.03 / (0.99 - 0.485), 2))
    assert any(line.startswith("start kept at 0.6") for line in written)

    toml.write_text(toml.read_text().replace("start = 0.6  ", "start = 0.48 "))
    near = Calibration("demo-task", [0.485, 0.49], [1.0, 0.96, 0.99], timing=True)
    written = write_calibration(load_task(root), near)
    assert load_task(root).scoring.start == 0.48  # timing noise: the anchor stays
    assert any("within the timing noise" in line for line in written)
    far = Calibration("demo-task", [0.7, 0.7], [1.0, 0.99], timing=True)  # better: moved
    write_calibration(load_task(root), far)
    assert load_task(root).scoring.start == 0.7


@pytest.mark.bwrap
def test_skeleton_scores_oracle_1_and_null_0(tmp_path: Path) -> None:
    from rdbench.grading import default_factory, grade_workspace

    spec = load_task(new_task("demo-task", tmp_path))
    scores = {}
    for solution in (False, True):
        workspace = copy_starting_workspace(spec, tmp_path / f"ws-{solution}", solution=solution)
        grade = grade_workspace(spec, workspace, factory=default_factory("bwrap"))
        assert grade.valid, grade.message
        scores[solution] = grade.normalized_score
    assert scores == {False: 0.0, True: 1.0}


@pytest.mark.bwrap
def test_task_test_and_calibrate_write_pass_on_the_skeleton(tmp_path: Path) -> None:
    import subprocess

    root = new_task("demo-task", tmp_path)
    rdbench = shutil.which("rdbench") or str(Path(__file__).parents[1] / ".venv/bin/rdbench")
    tested = subprocess.run([rdbench, "task", "test", str(root), "--sandbox", "bwrap"],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert " passed" in tested.stdout and "failed" not in tested.stdout

    toml = root / "task.toml"
    before = toml.read_text()
    toml.write_text(before.replace("start = 0.485", "start = 0.4  ")
                    .replace("reference = 1.0", "reference = 0.9"))
    calibrated = runner.invoke(app, ["task", "calibrate", str(root), "--repeats", "2",
                                     "--write", "--sandbox", "bwrap"])
    assert calibrated.exit_code == 0, calibrated.output
    assert calibrated.output.count("start     #") == 2
    assert "spread 0.000" in calibrated.output
    assert toml.read_text() == before  # the measured anchors, every other byte kept


def test_a_tasks_own_tests_are_not_part_of_its_content_hash(tmp_path: Path) -> None:
    """The wheel leaves tests/ out: an installed task must hash as its source folder does."""
    from rdbench.identity import task_content_hash

    root = new_task("demo-task", tmp_path)
    before = task_content_hash(root)
    (root / "tests" / "test_more.py").write_text("def test_x() -> None: ...\n")
    assert task_content_hash(root) == before
    (root / "grader" / "extra.py").write_text("X = 1\n")
    assert task_content_hash(root) != before
