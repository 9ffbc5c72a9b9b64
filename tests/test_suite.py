"""Suite runs: the run's configuration (run.json), its episodes, resuming it, and a real
small suite (two tasks x the null agent x two seeds) through `rdbench run`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import toy_task_as
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.records import load_result
from rdbench.suite import AgentChoice, RunConfig, RunConfigError, expand, open_run, run_id_for


def _config(tasks: list[str], **fields: object) -> RunConfig:
    values: dict[str, object] = {
        "tasks": tasks, "agents": [AgentChoice(name="null"), AgentChoice(name="oracle")],
        "runs": 2, "sandbox": "docker",
    }
    values.update(fields)
    return RunConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def two_tasks(tmp_path: Path) -> list[str]:
    """Two distinct copies of the toy task, as absolute folders."""
    return [str(toy_task_as(tmp_path / "tasks", name)) for name in ("toy-a", "toy-b")]


def test_a_run_expands_to_every_task_agent_and_seed(two_tasks: list[str]) -> None:
    specs = expand(_config(two_tasks, budget={"steps": 5}), "run-1")
    assert [(spec.seed, spec.task.id, spec.agent) for spec in specs] == [
        (0, "toy-a", "null"), (0, "toy-a", "oracle"), (0, "toy-b", "null"),
        (0, "toy-b", "oracle"),
        (1, "toy-a", "null"), (1, "toy-a", "oracle"), (1, "toy-b", "null"),
        (1, "toy-b", "oracle"),
    ]
    assert {spec.run_id for spec in specs} == {"run-1"}
    assert all(spec.budget == {"steps": 5} and spec.sandbox == "docker" for spec in specs)
    assert len({spec.episode_id for spec in specs}) == len(specs)


def test_agent_options_reach_only_their_agent(two_tasks: list[str]) -> None:
    config = _config(two_tasks[:1], runs=1, agents=[
        AgentChoice(name="command", options={"command": "python a.py"}),
        AgentChoice(name="null")])
    command, null = expand(config, "r")
    assert command.agent_options == {"command": "python a.py"}
    assert null.agent_options == {}


def test_run_json_round_trips(tmp_path: Path, two_tasks: list[str]) -> None:
    config = _config(two_tasks, budget={"time_s": 60.0}, tools=["bash", "submit"], parallel=3)
    config.save(tmp_path)
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["schema_version"] == 1
    assert RunConfig.load(tmp_path) == config


def test_run_json_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 99, "tasks": ["x"]}))
    with pytest.raises(RunConfigError, match="run schema_version 99"):
        RunConfig.load(tmp_path)


def test_resuming_with_another_configuration_is_refused_field_by_field(
    tmp_path: Path, two_tasks: list[str]
) -> None:
    open_run(_config(two_tasks), tmp_path)
    changed = _config(two_tasks, runs=3, budget={"steps": 4},
                      agents=[AgentChoice(name="null", options={"x": 1})])
    with pytest.raises(RunConfigError) as caught:
        open_run(changed, tmp_path)
    message = str(caught.value)
    assert "runs: 2 in run.json, 3 now" in message
    assert "budget: {} in run.json, {'steps': 4} now" in message
    assert "agents: " in message and "'x': 1" in message
    assert "tasks" not in message and "sandbox" not in message
    assert RunConfig.load(tmp_path).runs == 2  # run.json is left as it was


def test_resuming_with_other_execution_options_is_allowed(
    tmp_path: Path, two_tasks: list[str]
) -> None:
    open_run(_config(two_tasks), tmp_path)
    open_run(_config(two_tasks, parallel=4, executor="ray"), tmp_path)
    assert RunConfig.load(tmp_path).parallel == 4


def test_run_ids_differ_for_folders_named_alike(tmp_path: Path) -> None:
    assert run_id_for(tmp_path / "a" / "exp") != run_id_for(tmp_path / "b" / "exp")
    assert run_id_for(tmp_path / "a" / "exp").startswith("exp-")


def test_cli_refuses_a_changed_command_on_an_existing_run(
    tmp_path: Path, two_tasks: list[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    _config(two_tasks, agents=[AgentChoice(name="null")], runs=1).save(out)
    result = CliRunner().invoke(app, ["run", "--task", two_tasks[0], "--task", two_tasks[1],
                                      "--agent", "null", "--runs", "1", "--max-steps", "3",
                                      "--sandbox", "docker", "--out", str(out)])
    assert result.exit_code == 1
    assert "budget: {} in run.json, {'steps': 3} now" in result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["run.json"]


def test_cli_refuses_a_task_larger_than_the_machine_before_anything_runs(
    tmp_path: Path
) -> None:
    task = toy_task_as(tmp_path / "tasks", "huge-task", cpus=4096)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--task", str(task), "--agent", "null",
                                      "--sandbox", "docker", "--out", str(out)])
    assert result.exit_code == 1
    assert "task huge-task asks for 4096 CPUs" in result.stderr
    assert "but this machine has" in result.stderr
    assert not out.exists()


@pytest.mark.docker
def test_a_small_suite_runs_every_episode_once_and_a_repeat_skips_them(
    tmp_path: Path, two_tasks: list[str], sandbox_image: str
) -> None:
    out = tmp_path / "run"
    command = ["run", "--task", two_tasks[0], "--task", two_tasks[1], "--agent", "null",
               "--runs", "2", "--parallel", "2", "--sandbox", "docker", "--out", str(out)]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    folders = sorted(path for path in out.iterdir() if path.is_dir())
    assert len(folders) == 4
    results = [load_result(folder) for folder in folders]
    records = {folder.name: (folder / "result.json").read_bytes() for folder in folders}
    assert [json.loads(data)["normalized_score"] for data in records.values()] == [0.0] * 4
    assert RunConfig.load(out).tasks == two_tasks
    assert "4 run now, 0 skipped" in first.stdout
    assert "run summary" in first.stdout  # the table of `rdbench show`, at the end
    progress = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    finished = [line for line in progress if line["event"] == "episode.finished"]
    assert len(finished) == 4  # no terminal: the progress comes as JSON lines
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "0 run now, 4 skipped" in again.stdout
    skipped = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    assert sum(line["event"] == "episode.skipped" for line in skipped) == 4
    assert {folder.name: (folder / "result.json").read_bytes() for folder in folders} == records
    assert results == [load_result(folder) for folder in folders]
    assert not (out / ".rdbench-run.lock").exists()


@pytest.mark.docker
def test_resume_removes_the_containers_labelled_with_the_run(
    sandbox_image: str, docker_client: object
) -> None:
    from rdbench.sandbox.base import SandboxConfig
    from rdbench.sandbox.docker import DockerSandbox
    from rdbench.suite import remove_run_sandboxes

    run_id = f"suite-test-{os.getpid()}"
    sandbox = DockerSandbox(SandboxConfig(labels={"rdbench.run": run_id}))
    try:
        assert remove_run_sandboxes(run_id, None) == [sandbox.id[:12]]
        assert docker_client.containers.list(  # type: ignore[attr-defined]
            all=True, filters={"label": f"rdbench.run={run_id}"}) == []
    finally:
        sandbox.close()


def test_resume_removes_the_host_folders_of_the_dead_attempt(tmp_path: Path) -> None:
    from rdbench.sandbox.hostdirs import STATE_DIR
    from rdbench.suite import remove_run_sandboxes

    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = STATE_DIR / f"rdbench-bwrap-{dead.pid}-suitetest"
    mine.mkdir()
    try:
        removed = remove_run_sandboxes(f"no-such-run-{os.getpid()}", dead.pid)
        assert mine.name in removed
        assert not mine.exists()
    finally:
        if mine.exists():
            mine.rmdir()


def test_options_after_an_agents_name_are_that_agents_only(
    tmp_path: Path, two_tasks: list[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    _config(two_tasks[:1], runs=1, agents=[AgentChoice(name="null")]).save(out)
    result = CliRunner().invoke(app, [
        "run", "--task", two_tasks[0], "--agent", "command command='python3 a.py --x 1'",
        "--agent", "null", "--sandbox", "docker", "--out", str(out)])
    assert result.exit_code == 1
    assert ("[{'name': 'command', 'options': {'command': 'python3 a.py --x 1'}}, "
            "{'name': 'null', 'options': {}}] now") in result.stderr


def test_suite_all_is_every_shipped_task_then_the_tasks_given(
    tmp_path: Path, two_tasks: list[str]
) -> None:
    from rdbench.task import discover_tasks

    out = tmp_path / "run"
    out.mkdir()
    _config(two_tasks[:1], runs=1, agents=[AgentChoice(name="null")]).save(out)
    result = CliRunner().invoke(app, ["run", "--suite", "all", "--task", two_tasks[0],
                                      "--agent", "null", "--sandbox", "docker",
                                      "--out", str(out)])
    assert result.exit_code == 1
    assert f"{[*discover_tasks(), two_tasks[0]]!r} now" in result.stderr
