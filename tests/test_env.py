"""RDEnv end to end in Docker: the Gymnasium contract, tools, scoring, budgets, grading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import TOY_TASK, copy_toy_task

from rdbench.env import RDEnv
from rdbench.sandbox.base import AGENT_UID
from rdbench.task import load_task

pytestmark = pytest.mark.docker


@pytest.fixture
def toy_env(sandbox_image: str) -> Iterator[RDEnv]:
    env = RDEnv(load_task(TOY_TASK))
    env.reset(seed=0)
    yield env
    env.close()


def bash(env: RDEnv, command: str) -> tuple[str, Any, bool, bool, dict[str, Any]]:
    return env.step({"tool": "bash", "input": {"command": command}})


def test_gymnasium_make_env_passes_check_env(sandbox_image: str) -> None:
    env = gymnasium.make("rdbench/tabular-credit-v0")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_reset_observes_instructions_and_lays_out_workspace(toy_env: RDEnv) -> None:
    observation, *_ = bash(toy_env, "cat answer.py")
    assert "print(1)" in observation


def test_malformed_action_is_an_observation(toy_env: RDEnv) -> None:
    observation, reward, terminated, truncated, _ = toy_env.step("{not json")
    assert observation.startswith("Error: Action is not valid JSON")
    assert (reward, terminated, truncated) == (0.0, False, False)
    observation, *_ = toy_env.step({"tool": "nope"})
    assert "Unknown tool 'nope'" in observation
    assert "exit code: 0" in bash(toy_env, "true")[0]


def test_write_read_and_edit_file(toy_env: RDEnv) -> None:
    content = "x = 1\nx = 1\n"
    toy_env.step({"tool": "write_file", "input": {"path": "notes/a.txt", "content": content}})
    observation, *_ = toy_env.step({"tool": "read_file", "input": {"path": "notes/a.txt"}})
    assert observation == "x = 1\nx = 1\n"
    edit = {"tool": "edit_file", "input": {"path": "notes/a.txt", "old_string": "x = 1",
                                            "new_string": "y = 2"}}
    assert "appears 2 times" in toy_env.step(edit)[0]
    edit["input"]["old_string"] = "absent"
    assert "was not found" in toy_env.step(edit)[0]
    edit["input"]["old_string"] = "x = 1\nx"
    assert "replaced 1 occurrence" in toy_env.step(edit)[0]
    assert toy_env.step({"tool": "read_file", "input": {"path": "notes/a.txt"}})[0] == "y = 2 = 1\n"
    owner = bash(toy_env, "stat -c %U notes/a.txt")[0]
    assert "agent" in owner


def test_python_tool_runs_code(toy_env: RDEnv) -> None:
    observation, *_ = toy_env.step({"tool": "python", "input": {"code": "print(6 * 7)"}})
    assert "42" in observation


def test_agent_sandbox_holds_no_grader_or_solution(toy_env: RDEnv) -> None:
    assert toy_env.sandbox is not None
    listing = toy_env.sandbox.exec(["ls", "-A", "/grader"], user="root")
    assert listing.ok and listing.stdout == ""
    found = toy_env.sandbox.exec(
        ["sh", "-c", "find / -xdev -name score.py -o -name rdbench_grading.py 2>/dev/null"],
        user="root",
    )
    assert found.stdout.strip() == ""
    assert "print(5)" not in bash(toy_env, "grep -r 'print(5)' / 2>/dev/null | head -1")[0]


def test_score_tool_grades_validation_split_and_goes_on(toy_env: RDEnv) -> None:
    observation, reward, terminated, truncated, _ = toy_env.step({"tool": "score"})
    assert "Validation score: 1.5" in observation and "validation split" in observation
    assert (reward, terminated, truncated) == (0.0, False, False)


def test_score_tool_shows_three_significant_digits_and_records_all(
    tmp_path: Path, sandbox_image: str
) -> None:
    from rdbench.records import ScoreEvent
    from rdbench.transcript import Transcript, read_events

    transcript = Transcript(tmp_path)
    env = RDEnv(load_task(TOY_TASK), transcript=transcript)
    try:
        env.reset()
        content = "print(0.123456789)"
        env.step({"tool": "write_file", "input": {"path": "answer.py", "content": content}})
        observation, *_ = env.step({"tool": "score"})
    finally:
        env.close()
        transcript.close()
    assert observation.startswith("Validation score: 0.623 (answer.py printed 0.123 ")
    assert "12345" not in observation and "23456" not in observation
    (score,) = [event for event in read_events(tmp_path) if isinstance(event, ScoreEvent)]
    assert score.raw_score == pytest.approx(0.623456789, abs=1e-12)  # kept in full


def test_submit_grades_test_split_in_fresh_sandbox(toy_env: RDEnv) -> None:
    toy_env.step({"tool": "write_file", "input": {"path": "answer.py", "content": "print(4)"}})
    _, reward, terminated, truncated, info = toy_env.step({"tool": "submit"})
    assert terminated and not truncated
    assert info["raw_score"] == 4.0
    assert reward == pytest.approx(0.75)
    assert "test split" in info["message"]
    assert toy_env.final_grade is not None
    assert toy_env.final_grade.details["agent_probe"] == f"False {AGENT_UID}"
    assert toy_env.sandbox is None  # the agent's sandbox is gone
    with pytest.raises(RuntimeError, match="call reset"):
        bash(toy_env, "true")


def test_background_process_does_not_survive_the_episode(
    toy_env: RDEnv, docker_client: Any
) -> None:
    bash(toy_env, "nohup sleep 1000 >/dev/null 2>&1 &")
    episode = toy_env.labels["rdbench.episode"]
    toy_env.step({"tool": "submit"})
    left = docker_client.containers.list(
        all=True, filters={"label": f"rdbench.episode={episode}"}
    )
    assert left == []


def test_process_left_by_agent_code_is_killed_before_scoring(toy_env: RDEnv) -> None:
    daemon = (
        "import os, subprocess\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print(2)\n"
    )
    toy_env.step({"tool": "write_file", "input": {"path": "answer.py", "content": daemon}})
    _, _, _, _, info = toy_env.step({"tool": "submit"})
    assert info["raw_score"] == 2.0
    assert toy_env.final_grade is not None
    assert toy_env.final_grade.details["agent_processes_left"] == 0


def test_step_budget_truncates_and_still_grades(sandbox_image: str) -> None:
    env = RDEnv(load_task(TOY_TASK), budget={"steps": 2})
    env.reset()
    try:
        env.step({"tool": "write_file", "input": {"path": "answer.py", "content": "print(3)"}})
        _, reward, terminated, truncated, info = bash(env, "true")
    finally:
        env.close()
    assert truncated and not terminated
    assert info["limit_hit"] == "steps"
    assert info["raw_score"] == 3.0 and reward == pytest.approx(0.5)


def test_crashed_submission_is_invalid_and_scores_zero(toy_env: RDEnv) -> None:
    toy_env.step({"tool": "write_file", "input": {"path": "answer.py", "content": "1/0"}})
    _, reward, _, _, info = toy_env.step({"tool": "submit"})
    assert info["valid"] is False and reward == 0.0
    assert "ZeroDivisionError" in info["message"]


def test_grader_crash_is_an_infrastructure_error_not_a_zero(
    tmp_path: Path, sandbox_image: str
) -> None:
    task_dir = copy_toy_task(tmp_path)
    (task_dir / "grader" / "score.py").write_text("raise SystemExit('grader bug')\n")
    env = RDEnv(load_task(task_dir))
    env.reset()
    try:
        _, _, terminated, _, info = env.step({"tool": "submit"})
    finally:
        env.close()
    assert terminated
    assert info["normalized_score"] is None
    assert "grader crashed" in info["infrastructure_error"]
    assert "grader bug" in info["infrastructure_error"]


def test_transcript_records_every_event(tmp_path: Path, sandbox_image: str) -> None:
    from rdbench.records import GradeEvent
    from rdbench.transcript import Transcript, read_events

    transcript = Transcript(tmp_path)
    env = RDEnv(load_task(TOY_TASK), transcript=transcript)
    env.reset()
    bash(env, "echo hi")
    env.step({"tool": "submit"})
    env.close()
    transcript.close()
    events = read_events(tmp_path)
    kinds = [event.type for event in events]
    assert kinds == ["reset", "action", "observation", "action", "submit", "grade"]
    grade = events[-1]
    assert isinstance(grade, GradeEvent)
    assert grade.raw_score == 1.0 and json.dumps(grade.model_dump())
