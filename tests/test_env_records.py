"""What an episode records, in Docker: typed transcript events holding what the agent was given
and what each tool call gave (full and shown text, with its facts), the env's info keys, and
validation gradings kept out of working time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK, copy_toy_task

from rdbench.env import RDEnv
from rdbench.observation import Observation
from rdbench.records import (
    ActionEvent,
    Event,
    GradeEvent,
    ObservationEvent,
    ResetEvent,
    ScoreEvent,
    parse_event,
)
from rdbench.task import load_task
from rdbench.transcript import TRANSCRIPT, Transcript, read_events

pytestmark = pytest.mark.docker

SHOWN_LIMIT = 300  # the recorded episode's max_observation_chars
LONG_OUTPUT = "python3 -c 'print(\"x\" * 2000)'"
ACTIONS: list[Any] = [
    {"tool": "bash", "input": {"command": "exit 3"}},
    {"tool": "bash", "input": {"command": "sleep 20", "timeout": 1}},
    {"tool": "bash", "input": {"command": LONG_OUTPUT}},
    {"tool": "score"},
    "{not json",
    {"tool": "submit"},
]


@dataclass
class Recorded:
    """One episode of the toy task played through ACTIONS, with what it left."""

    folder: Path
    reset_info: dict[str, Any]
    infos: list[dict[str, Any]]  # of each step, in ACTIONS' order
    events: list[Event]

    def observation(self, step: int) -> ObservationEvent:
        (event,) = [e for e in self.events
                    if isinstance(e, ObservationEvent) and e.step == step]
        return event


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Recorded:
    folder = tmp_path_factory.mktemp("episode")
    transcript = Transcript(folder)
    env = RDEnv(load_task(TOY_TASK), transcript=transcript, max_observation_chars=SHOWN_LIMIT)
    try:
        _, reset_info = env.reset(seed=7)
        infos = [env.step(action)[4] for action in ACTIONS]
    finally:
        env.close()
        transcript.close()
    return Recorded(folder, reset_info, infos, read_events(folder))


def test_every_line_of_a_real_transcript_is_a_typed_event(recorded: Recorded) -> None:
    lines = (recorded.folder / TRANSCRIPT).read_text(encoding="utf-8").splitlines()
    parsed = [parse_event(json.loads(line)) for line in lines]
    assert [event.type for event in parsed] == [
        "reset",
        *["action", "observation"] * 3,
        "action", "score", "observation",
        "action", "observation",
        "action", "submit", "grade",
    ]
    assert all(event.v == 1 for event in parsed)


def test_reset_event_holds_instructions_tool_definitions_budget_and_seed(
    recorded: Recorded,
) -> None:
    reset = recorded.events[0]
    assert isinstance(reset, ResetEvent)
    task = load_task(TOY_TASK)
    assert reset.seed == 7 and reset.task_id == "toy-task"
    assert reset.instructions == task.instructions and reset.instructions.strip()
    assert [d["name"] for d in reset.tool_definitions] == reset.tools
    assert "score" in reset.tools and reset.tools[-1] == "submit"
    bash = next(d for d in reset.tool_definitions if d["name"] == "bash")
    assert bash["input_schema"]["required"] == ["command"]
    assert reset.budget["steps"] == 20 and reset.budget["time_s"] == 600
    assert reset.sandbox == "docker"
    assert reset.observation is not None and reset.instructions.strip() in reset.observation


def test_reset_info_carries_what_the_runner_records(recorded: Recorded) -> None:
    info = recorded.reset_info
    reset = recorded.events[0]
    assert isinstance(reset, ResetEvent)
    assert info["tools"] == reset.tool_definitions
    assert info["tool_names"] == reset.tools
    assert info["budget"] == reset.budget and info["instructions"] == reset.instructions
    assert (info["seed"], info["sandbox"]) == (7, "docker")


def test_a_failing_command_records_its_exit_code_as_an_error(recorded: Recorded) -> None:
    event = recorded.observation(1)
    assert (event.tool, event.exit_code, event.is_error, event.timed_out) == ("bash", 3, True,
                                                                             False)
    assert recorded.infos[0]["observation"] == {
        "tool": "bash", "is_error": True, "exit_code": 3, "timed_out": False,
        "truncated": False,
    }
    assert Observation.from_info(event.shown or "", recorded.infos[0]).exit_code == 3


def test_a_timed_out_command_records_timed_out(recorded: Recorded) -> None:
    event = recorded.observation(2)
    assert event.timed_out and event.is_error
    assert recorded.infos[1]["observation"]["timed_out"] is True


def test_a_long_output_keeps_the_full_text_and_the_shown_one(recorded: Recorded) -> None:
    event = recorded.observation(3)
    assert event.truncated and not event.is_error and event.exit_code == 0
    assert "x" * 2000 in event.text
    assert event.shown is not None and len(event.shown) <= SHOWN_LIMIT
    assert "characters cut" in event.shown and "x" * 2000 not in event.shown
    assert recorded.infos[2]["observation"]["truncated"] is True


def test_an_untruncated_observation_shows_the_full_text(recorded: Recorded) -> None:
    event = recorded.observation(1)
    assert event.shown == event.text and not event.truncated


def test_score_event_holds_the_grade_and_its_times(recorded: Recorded) -> None:
    (score,) = [e for e in recorded.events if isinstance(e, ScoreEvent)]
    assert score.step == 4
    assert score.raw_score == 1.5 and score.valid
    assert score.normalized_score == pytest.approx(0.125)
    assert "validation split" in score.message
    assert score.grading_s is not None and score.grading_s > 0
    assert score.elapsed_working_s is not None and score.t
    validation = recorded.infos[3]["validation"]
    assert validation == {"raw_score": 1.5, "normalized_score": pytest.approx(0.125),
                          "valid": True, "grading_s": score.grading_s}
    shown = recorded.observation(4)
    assert shown.tool == "score" and not shown.is_error and shown.exit_code is None


def test_a_malformed_action_is_an_error_observation_of_no_tool(recorded: Recorded) -> None:
    action = next(e for e in recorded.events if isinstance(e, ActionEvent) and e.step == 5)
    assert action.raw == "{not json" and action.tool is None
    event = recorded.observation(5)
    assert event.is_error and event.tool is None and event.text.startswith("Error: ")
    assert recorded.infos[4]["observation"]["is_error"] is True


def test_final_info_carries_everything_the_runner_records(recorded: Recorded) -> None:
    final = recorded.infos[-1]
    (score,) = [e for e in recorded.events if isinstance(e, ScoreEvent)]
    assert final["raw_score"] == 1.0 and final["normalized_score"] == 0.0
    assert final["valid"] is True and "test split" in final["message"]
    assert final["limit_hit"] is None and final["infrastructure_error"] is None
    assert final["steps"] == len(ACTIONS)
    assert final["working_s"] > 0 and final["grading_s"] == pytest.approx(score.grading_s,
                                                                          abs=0.002)
    assert final["sandbox"] == "docker"
    assert isinstance(final["workspace_archive"], Path)  # removed by close(), taken before
    assert final["observation"]["tool"] == "submit" and final["tool"] == "submit"
    grade = recorded.events[-1]
    assert isinstance(grade, GradeEvent) and grade.raw_score == 1.0
    assert grade.grading_s is not None and grade.grading_s > 0


# --- validation gradings are not working time --------------------------------------------------

GRADING_SLEEP_S = 5.0


@pytest.fixture
def slow_grading_task(tmp_path: Path) -> Path:
    """The toy task whose validation grading sleeps GRADING_SLEEP_S seconds first."""
    task_dir = copy_toy_task(tmp_path)
    score = task_dir / "grader" / "score.py"
    text = score.read_text()
    marker = "args = parse_args()\n"
    score.write_text(text.replace(
        marker,
        f"{marker}import time\nif args.split == 'validation':\n"
        f"    time.sleep({GRADING_SLEEP_S})\n",
    ))
    return task_dir


@pytest.fixture
def slow_env(slow_grading_task: Path, tmp_path: Path, sandbox_image: str) -> Iterator[RDEnv]:
    env = RDEnv(load_task(slow_grading_task), budget={"time_s": 4},
                transcript=Transcript(tmp_path / "episode"))
    yield env
    env.close()
    assert env.transcript is not None
    env.transcript.close()


def test_validation_grading_is_recorded_and_not_charged_to_working_time(
    slow_env: RDEnv, tmp_path: Path
) -> None:
    started = time.monotonic()
    slow_env.reset()
    _, _, terminated, truncated, info = slow_env.step({"tool": "score"})
    # 4 s of budget, a grading of more than 5 s: the episode goes on
    assert not (terminated or truncated)
    assert info["validation"]["grading_s"] >= GRADING_SLEEP_S
    assert slow_env.elapsed_s < 4
    *_, final = slow_env.step({"tool": "submit"})
    wall = time.monotonic() - started
    assert final["limit_hit"] is None
    assert final["grading_s"] == pytest.approx(info["validation"]["grading_s"], abs=0.002)
    assert final["working_s"] < wall - GRADING_SLEEP_S
    (score,) = [e for e in read_events(tmp_path / "episode") if isinstance(e, ScoreEvent)]
    assert score.grading_s == info["validation"]["grading_s"]
    assert score.elapsed_working_s is not None and score.elapsed_working_s < 4


def test_working_time_is_paused_while_a_validation_grading_runs(slow_env: RDEnv) -> None:
    import threading

    slow_env.reset()
    seen: list[float] = []
    grading = threading.Thread(target=slow_env.step, args=({"tool": "score"},))
    before = slow_env.elapsed_s
    grading.start()
    time.sleep(GRADING_SLEEP_S / 2)  # the grader is asleep: the sandbox is up by now
    seen.append(slow_env.elapsed_s)
    time.sleep(1.0)
    seen.append(slow_env.elapsed_s)
    grading.join()
    assert seen[1] - seen[0] < 0.2  # a second passed, working time stood still
    assert seen[0] - before < 2.0
