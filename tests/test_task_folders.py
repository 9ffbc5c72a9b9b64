"""Self-contained task folders: the files the agent sees and the grader trusts are declared once
in task.toml (`[workspace] from_grader`, `[grader] from_solution`, `[lab] from_workspace`) and
copied wherever the starting workspace (or the grader, or the lab) is laid out; the declaration
is checked when the task loads."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from helpers import BACKENDS, TOY_TASK
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.env import RDEnv
from rdbench.identity import task_content_hash
from rdbench.resources import environments_dir
from rdbench.sandbox.base import AGENT_HOME
from rdbench.starting_workspace import copy_starting_workspace, starting_workspace
from rdbench.task import TaskSpecError, discover_tasks, load_task

LAB_TASK = Path(__file__).parent / "fixtures" / "lab-task"
DECLARING = sorted(task.id for task in discover_tasks().values() if task.from_grader)


def _toy(tmp_path: Path, section: str, folder: Path = TOY_TASK) -> Path:
    """A copy of a fixture task with `section` appended to its task.toml, and a grader file
    `rules.py` to declare."""
    task = tmp_path / folder.name
    shutil.copytree(folder, task)
    (task / "grader" / "rules.py").write_text("LIMIT = 3\n", encoding="utf-8")
    with (task / "task.toml").open("a", encoding="utf-8") as toml:
        toml.write("\n" + section + "\n")
    return task


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_tasks_declare_their_shared_files() -> None:
    assert DECLARING, "no shipped task declares [workspace] from_grader"
    for task_id in DECLARING:
        task = load_task(environments_dir() / task_id)
        for target in task.from_grader:
            assert not (task.workspace_dir / target).exists(), f"{task_id}: {target} is kept twice"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_declared_file_reaches_the_workspace_at_reset_byte_identical(
    request: pytest.FixtureRequest, backend: str
) -> None:
    request.getfixturevalue("sandbox_image" if backend == "docker" else "bwrap_rootfs")
    for task_id in DECLARING:
        task = load_task(environments_dir() / task_id)
        env = RDEnv(task, sandbox=backend)
        try:
            env.reset()
            assert env.sandbox is not None
            for target, source in task.from_grader.items():  # read as the agent reads it
                done = env.sandbox.exec(["sha256sum", target], cwd=AGENT_HOME)
                assert done.returncode == 0, (task_id, target, done.stderr)
                assert done.stdout.split()[0] == _sha256(source), (task_id, target)
            listed = env.sandbox.exec(["find", ".", "-type", "f"], cwd=AGENT_HOME).stdout
            expected = {path.relative_to(task.workspace_dir).as_posix()
                        for path in task.workspace_dir.rglob("*") if path.is_file()}
            assert {line.removeprefix("./") for line in listed.split()} == (
                expected | set(task.from_grader)), task_id
        finally:
            env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_declared_workspace_file_reaches_the_lab(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    request.getfixturevalue("sandbox_image" if backend == "docker" else "bwrap_rootfs")
    task = _toy(tmp_path, '[lab]\nfrom_workspace = ["answer.py:copied/answer.py"]', LAB_TASK)
    (task / "lab" / "lookup.py").write_text(
        "import hashlib\nprint(hashlib.sha256(open('copied/answer.py', 'rb').read())"
        ".hexdigest())\n", encoding="utf-8")
    env = RDEnv(load_task(task), sandbox=backend)
    try:
        env.reset()
        observation, *_ = env.step({"tool": "lookup", "input": {"key": "any"}})
    finally:
        env.close()
    assert _sha256(task / "workspace" / "answer.py") in observation


def test_copy_lays_declared_files_over_the_workspace(tmp_path: Path) -> None:
    task = load_task(_toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py:lib/rules.py"]'))
    copy_starting_workspace(task, tmp_path / "start")
    assert (tmp_path / "start" / "lib" / "rules.py").read_text() == "LIMIT = 3\n"
    assert (tmp_path / "start" / "answer.py").read_bytes() == (
        task.workspace_dir / "answer.py").read_bytes()
    assert task.starting_file("lib/rules.py") == task.grader_dir / "rules.py"


def test_starting_workspace_copies_only_when_files_are_declared(tmp_path: Path) -> None:
    plain = load_task(TOY_TASK)
    with starting_workspace(plain) as folder:
        assert folder == plain.workspace_dir
    task = load_task(_toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py"]'))
    with starting_workspace(task) as folder:
        assert (folder / "rules.py").is_file() and folder != task.workspace_dir
    assert not folder.exists()


def test_content_hash_covers_the_declared_files(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py"]')
    before = task_content_hash(task)
    (task / "grader" / "rules.py").write_text("LIMIT = 4\n", encoding="utf-8")
    assert task_content_hash(task) != before


def test_a_check_may_name_a_declared_file(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py:check.py"]')
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace('timeout_s = 60', 'timeout_s = 60\nchecks = '
                                             '["check.py"]'), encoding="utf-8")
    assert load_task(task).scoring.checks == ["check.py"]


@pytest.mark.parametrize(("entry", "says"), [
    ("missing.py", "no regular file inside grader/"),
    ("score.py:answer.py", "workspace/answer.py exists already"),
    ("rules.py:../outside.py", "stays inside its folder"),
    ("rules.py:/etc/rules.py", "stays inside its folder"),
    ("a:b:c", "one colon at most"),
    ("rules.py:", "no empty side"),
    ("../task.toml:task.toml", "stays inside its folder"),
])
def test_a_bad_from_grader_entry_names_itself_and_the_fix(
    tmp_path: Path, entry: str, says: str
) -> None:
    task = _toy(tmp_path, f"[workspace]\nfrom_grader = [{entry!r}]")
    with pytest.raises(TaskSpecError) as raised:
        load_task(task)
    assert f"[workspace] from_grader entry {entry!r}" in str(raised.value)
    assert says in str(raised.value)


def test_duplicate_and_nested_targets_are_refused(tmp_path: Path) -> None:
    twice = _toy(tmp_path / "twice", '[workspace]\nfrom_grader = ["rules.py", "score.py:rules.py"]')
    with pytest.raises(TaskSpecError, match="declared twice"):
        load_task(twice)
    nested = _toy(tmp_path / "nested",
                  '[workspace]\nfrom_grader = ["rules.py:lib", "score.py:lib/score.py"]')
    with pytest.raises(TaskSpecError, match="lies inside another target"):
        load_task(nested)


def test_a_symlinked_or_folder_source_is_refused(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["link.py", "sub"]')
    (task / "grader" / "link.py").symlink_to(task / "grader" / "rules.py")
    (task / "grader" / "sub").mkdir()
    with pytest.raises(TaskSpecError, match=r"'link.py'.*reached through a symbolic link"):
        load_task(task)
    (task / "grader" / "link.py").unlink()
    (task / "grader" / "link.py").write_text("")
    with pytest.raises(TaskSpecError, match=r"'sub'.*no regular file"):
        load_task(task)


def test_a_bad_lab_entry_is_refused(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[lab]\nfrom_workspace = ["nowhere.py"]', LAB_TASK)
    with pytest.raises(TaskSpecError, match=r"\[lab\] from_workspace entry 'nowhere.py'"):
        load_task(task)


def test_task_check_reports_a_bad_declaration(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["missing.py"]')
    result = CliRunner().invoke(app, ["task", "check", str(task)])
    assert result.exit_code != 0
    assert "from_grader entry 'missing.py'" in result.output
    good = _toy(tmp_path / "good", '[workspace]\nfrom_grader = ["rules.py"]')
    assert CliRunner().invoke(app, ["task", "check", str(good)]).exit_code == 0


def test_a_workspace_made_only_of_grader_files_needs_no_workspace_folder(tmp_path: Path) -> None:
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py:lib/rules.py"]')
    shutil.rmtree(task / "workspace")
    spec = load_task(task)
    copy_starting_workspace(spec, tmp_path / "start")
    assert [p.name for p in (tmp_path / "start").rglob("*")] == ["lib", "rules.py"]


@pytest.mark.docker
def test_grading_the_tasks_own_workspace_grades_the_start_with_its_declared_files(
    tmp_path: Path, sandbox_image: str
) -> None:
    """`rdbench grade <task>/workspace` grades the starting workspace, declared files and all:
    here answer.py prints a number from a file the task copies in from grader/."""
    task = _toy(tmp_path, '[workspace]\nfrom_grader = ["rules.py:limit.py"]')
    (task / "workspace" / "answer.py").write_text("from limit import LIMIT\nprint(LIMIT)\n")
    result = CliRunner().invoke(app, ["grade", str(task / "workspace"), "--task", str(task)])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["valid"] is True and verdict["raw_score"] == 3.0, verdict


# --- [grader] from_solution: the reference the grader trusts, kept once in solution/ ---------

REFERENCE_PROBE = '''\
import hashlib, os, stat
from rdbench_grading import emit, parse_args, run_as_agent

args = parse_args()
path = "/grader/reference_answer.py"
probe = run_as_agent(["python3", "-c", f"import os; print(os.access({path!r}, os.R_OK))"],
                     cwd=args.workspace, timeout=20)
emit(1.0, valid=True, message="read the reference", details={
    "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    "owner": os.stat(path).st_uid, "agent_reads": probe.stdout.strip()})
'''


def test_shipped_tasks_keep_their_trusted_reference_once() -> None:
    trusting = [task for task in discover_tasks().values() if task.grader_from_solution]
    assert trusting, "no shipped task declares [grader] from_solution"
    for task in trusting:
        for target in task.grader_from_solution:
            assert not (task.grader_dir / target).exists(), f"{task.id}: {target} is kept twice"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_declared_solution_file_reaches_the_grader_root_only(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    from rdbench.grading import default_factory, grade_workspace

    request.getfixturevalue("sandbox_image" if backend == "docker" else "bwrap_rootfs")
    task = _toy(tmp_path, '[grader]\nfrom_solution = ["answer.py:reference_answer.py"]')
    (task / "grader" / "score.py").write_text(REFERENCE_PROBE, encoding="utf-8")
    spec = load_task(task)
    grade = grade_workspace(spec, spec.workspace_dir, split="test",
                            factory=default_factory(backend))
    assert grade.valid, grade.message
    assert grade.details["sha256"] == _sha256(task / "solution" / "answer.py")
    assert (grade.details["owner"], grade.details["agent_reads"]) == (0, "False")


@pytest.mark.parametrize(("entry", "says"), [
    ("missing.py", "no regular file inside solution/"),
    ("answer.py:score.py", "grader/score.py exists already"),
    ("answer.py:../outside.py", "stays inside its folder"),
])
def test_a_bad_from_solution_entry_names_itself_and_the_fix(
    tmp_path: Path, entry: str, says: str
) -> None:
    task = _toy(tmp_path, f"[grader]\nfrom_solution = [{entry!r}]")
    with pytest.raises(TaskSpecError) as raised:
        load_task(task)
    assert f"[grader] from_solution entry {entry!r}" in str(raised.value)
    assert says in str(raised.value)
