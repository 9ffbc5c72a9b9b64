"""Task folders: loading, validation errors that name the problem, discovery, `task check`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TOY_TASK, copy_toy_task
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.task import TaskSpecError, discover_tasks, load_task


def test_toy_task_loads_with_its_fields() -> None:
    spec = load_task(TOY_TASK)
    assert spec.id == "toy-task"
    assert spec.scoring.reference == 5.0
    assert spec.sandbox.memory_mb == 512
    assert spec.env_id == "rdbench/toy-task-v0"
    assert "answer.py" in spec.instructions


def test_shipped_tasks_all_load() -> None:
    tasks = discover_tasks()
    assert "tabular-credit" in tasks
    for spec in tasks.values():
        assert spec.workspace_dir.is_dir() or spec.from_grader, f"{spec.id} has no workspace"
        assert spec.grader_dir.is_dir()
        assert spec.solution_dir.is_dir(), f"{spec.id} has no reference solution"


def _edit_toml(task: Path, old: str, new: str) -> None:
    path = task / "task.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_unknown_field_is_named(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, "pids = 128", "pids = 128\nmemroy = 3")
    with pytest.raises(TaskSpecError, match=r"unknown field \[sandbox\] memroy"):
        load_task(task)


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, "time_s = 600", 'time_s = "ten minutes"')
    with pytest.raises(TaskSpecError, match=r"\[budget\] time_s.*'ten minutes'"):
        load_task(task)


def test_bad_direction_is_named(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, 'direction = "higher"', 'direction = "up"')
    with pytest.raises(TaskSpecError, match=r"\[scoring\] direction"):
        load_task(task)


def test_missing_instructions_is_named(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    (task / "instructions.md").unlink()
    with pytest.raises(TaskSpecError, match=r"instructions\.md: missing"):
        load_task(task)


def test_missing_workspace_is_named(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    for path in (task / "workspace").iterdir():
        path.unlink()
    (task / "workspace").rmdir()
    with pytest.raises(TaskSpecError, match="workspace/: missing"):
        load_task(task)


def test_id_must_match_folder(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, 'id = "toy-task"', 'id = "other-task"')
    with pytest.raises(TaskSpecError, match="must match the folder name"):
        load_task(task)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, "[budget]", "[budget")
    with pytest.raises(TaskSpecError, match="not valid TOML"):
        load_task(task)


def test_task_check_exits_zero_on_good_task() -> None:
    result = CliRunner().invoke(app, ["task", "check", str(TOY_TASK)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_task_check_exits_nonzero_and_names_wrong_field(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path)
    _edit_toml(task, "steps = 20", "steps = -3")
    result = CliRunner().invoke(app, ["task", "check", str(task / "task.toml")])
    assert result.exit_code == 1
    assert "[budget] steps" in result.output


def test_tasks_command_lists_shipped_task() -> None:
    result = CliRunner().invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    assert "tabular-credit" in result.output
    assert "roc_auc" in result.output
