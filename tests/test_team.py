"""Team episodes (the team scaffold): N workers run N sandboxes of one real task at once, their
posts reach each other, the workspace with the best validation score is the one graded, and
nothing is left on the host, also when the run is stopped or interrupted.

The workers here are scripted and use TaskInfo.seat the way the team scaffold does (the
end-to-end version with the claude agent and the fake server is in
test_scaffolds_relay_team.py). The task is scaling-law, whose grader only reads answer.json.
"""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rdbench.agents import AGENTS, TaskInfo, Usage
from rdbench.cli import app
from rdbench.records import GradeEvent, ResetEvent, ScaffoldEvent
from rdbench.runner import EpisodeSpec, Interrupted, RunControl, run_episode
from rdbench.suite import request_for
from rdbench.task import load_task
from rdbench.team import Board, choose, worker_budget
from rdbench.transcript import read_events

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "environments" / "scaling-law"
REFERENCE_ANSWER = (TASK / "solution" / "answer.json").read_text(encoding="utf-8")
WAIT_S = 60.0  # the longest a worker waits for the others' posts


def sandbox_folders() -> set[Path]:
    """This process's bwrap sandboxes' folders (not the disks kept ready: empty until a
    sandbox takes one)."""
    return {path for path in Path("/var/tmp").glob(f"rdbench-bwrap-{os.getpid()}-*")
            if path.is_dir() and any(path.iterdir())}


def own_sandboxes() -> set[Path]:
    """This process's bwrap sandboxes: their folders and cgroups."""
    return sandbox_folders() | {*Path("/sys/fs/cgroup").glob(f"**/rdbench/{os.getpid()}-*")}


@dataclass
class Seen:
    """What the scripted workers of a test saw (from their threads)."""

    reads: dict[int, list[str]] = field(default_factory=dict)
    sandboxes: dict[int, set[Path]] = field(default_factory=dict)
    budgets: dict[int, dict[str, Any]] = field(default_factory=dict)
    all_posted: threading.Event = field(default_factory=threading.Event)


class TeamMate:
    """Worker 1 writes the reference answer (the others leave the start); every worker posts
    a hello, waits until it has read the other workers' hellos (all sandboxes are up then),
    notes the sandboxes on the host, and submits, or with `stay` sleeps in its sandbox."""

    name = "team-mate"

    def __init__(self, seen: Seen, stay: bool, scaffold: str | None = None):
        self.seen, self.stay = seen, stay
        self.acts = 0

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Take the seat."""
        assert info.seat is not None, "a team worker has a seat"
        self.info, self.seat, self.acts = info, info.seat, 0
        self.seen.budgets[self.seat.index] = dict(info.budget)

    def act(self, observation: str) -> dict[str, Any]:
        """Answer, post and read, then submit (or sleep)."""
        self.acts += 1
        if self.acts == 1:
            if self.seat.index == 1:
                return {"tool": "write_file",
                        "input": {"path": "answer.json", "content": REFERENCE_ANSWER}}
            return {"tool": "bash", "input": {"command": "true"}}
        if self.acts == 2:
            self._meet_the_others()
        if self.stay:
            return {"tool": "bash", "input": {"command": "sleep 60"}}
        return {"tool": "submit", "input": {}}

    def _meet_the_others(self) -> None:
        board, me = self.seat.board, self.seat.index
        hello = f"hello from worker {me}"
        board.post(me, hello)
        self.info.record("scaffold", {"action": "board_post", "text": hello})
        read: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while len(read) < self.seat.size - 1 and time.monotonic() < deadline:
            read += [post.text for post in board.read(me)]
            time.sleep(0.05)
        self.seen.reads[me] = read
        self.seen.sandboxes[me] = sandbox_folders()
        if len(board.posts) == self.seat.size:
            self.seen.all_posted.set()

    def usage(self) -> Usage:
        """A token a step, to show the team's usage is the workers' sum."""
        return Usage(input_tokens=self.acts, requests=self.acts)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    made = Seen()
    monkeypatch.setitem(AGENTS, "team-mate",
                        lambda stay=False, scaffold=None: TeamMate(made, stay, scaffold))
    return made


def team_spec(stay: bool = False) -> EpisodeSpec:
    return EpisodeSpec(task=load_task(TASK), agent="team-mate", sandbox="bwrap",
                       scaffold="team(workers=3)", budget={"steps": 30},
                       agent_options={"stay": True} if stay else {})


def test_the_board_gives_each_worker_the_others_new_posts() -> None:
    heard: list[tuple[int, str]] = []
    board = Board(3, on_post=lambda post: heard.append((post.worker, post.text)))
    board.post(0, "a")
    board.post(1, "b")
    assert [post.text for post in board.read(0)] == ["b"]
    assert [post.text for post in board.read(2)] == ["a", "b"]
    assert board.read(2) == []
    board.post(2, "c")
    assert [post.text for post in board.read(0)] == ["c"]
    assert heard == [(0, "a"), (1, "b"), (2, "c")]
    with pytest.raises(ValueError, match="from 0 to 2"):
        board.post(3, "d")


def test_choice_is_the_best_validation_score_ties_to_the_lowest_index() -> None:
    assert choose([0.2, 0.9, 0.5]) == 1
    assert choose([0.5, 0.9, 0.9]) == 1
    assert choose([None, 0.0, None]) == 1
    assert choose([None, None]) == 0


def test_a_team_shares_the_budget_and_asks_for_a_sandbox_per_worker() -> None:
    spec = EpisodeSpec(task=load_task(TASK), agent="null", sandbox="bwrap",
                       scaffold="team(workers=3)", budget={"steps": 31, "tokens": 3000,
                                                            "cost_usd": 3.0})
    assert worker_budget(spec, 3) == {"steps": 10, "time_s": 2400.0, "tokens": 1000,
                                      "cost_usd": 1.0}
    single = request_for(EpisodeSpec(task=spec.task, agent="null", sandbox="bwrap"))
    team = request_for(spec)
    assert (team.cpus, team.memory_mb) == (3 * single.cpus, 3 * single.memory_mb)


@pytest.mark.bwrap
def test_a_team_of_three_grades_the_best_validation_workspace(
    seen: Seen, tmp_path: Path
) -> None:
    before = own_sandboxes()
    spec = team_spec()
    result = run_episode(spec, tmp_path)
    folder = tmp_path / spec.episode_id

    assert all(len(found - before) >= 3 for found in seen.sandboxes.values())  # all at once
    others = {index: sorted(f"hello from worker {other}" for other in range(3) if other != index)
              for index in range(3)}
    assert {index: sorted(read) for index, read in seen.reads.items()} == others
    assert seen.budgets[0]["steps"] == 10 and result.budget["steps"] == 30  # 1/3 each

    assert result.team is not None
    assert result.team.chosen == 1 and result.team.workers == 3
    scores = result.team.validation_scores
    assert scores[1] is not None and scores[1] > max(scores[0] or 0.0, scores[2] or 0.0)
    worker_grades = {index: next(event for event in read_events(folder / "workers" / str(index))
                                 if isinstance(event, GradeEvent)) for index in range(3)}
    assert result.normalized_score == worker_grades[1].normalized_score
    assert result.normalized_score is not None and result.normalized_score > 0.9
    assert (folder / "workspace.tar.gz").read_bytes() == (
        folder / "workers" / "1" / "workspace.tar.gz").read_bytes()
    assert result.outcome == "submitted" and result.team.worker_steps == [2, 2, 2]
    assert result.steps == 6 and result.usage.input_tokens == 3 * 2

    events = read_events(folder)
    posts = [(event.worker, event.text) for event in events
             if isinstance(event, ScaffoldEvent) and event.action == "board_post"]
    assert sorted(posts) == [(index, f"hello from worker {index}") for index in range(3)]
    (grade,) = [event for event in events if isinstance(event, GradeEvent)]
    assert grade.details == {"chosen": 1, "validation_scores": scores}
    for index in range(3):
        worker_events = read_events(folder / "workers" / str(index))
        assert any(isinstance(event, ResetEvent) for event in worker_events)
        (own_post,) = [event for event in worker_events if isinstance(event, ScaffoldEvent)]
        assert own_post.worker == index
    assert json.loads((folder / "result.json").read_text())["team"]["chosen"] == 1
    assert own_sandboxes() - before == set()
    shown = CliRunner().invoke(app, ["transcript", str(folder)])
    assert shown.exit_code == 0, shown.output
    assert "board_post (worker 1)" in shown.output and "final grade" in shown.output


@pytest.mark.bwrap
@pytest.mark.parametrize("how", ["stop", "ctrl-c"])
def test_a_stopped_team_leaves_no_sandbox(seen: Seen, tmp_path: Path, how: str) -> None:
    before = own_sandboxes()
    control = RunControl()
    spec = team_spec(stay=True)

    def stop_when_all_are_up() -> None:
        if seen.all_posted.wait(WAIT_S):
            time.sleep(0.5)  # into their sleeping commands
        if how == "stop":
            control.stop_all()
        else:
            _thread.interrupt_main()

    stopper = threading.Thread(target=stop_when_all_are_up)
    stopper.start()
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted if how == "stop" else KeyboardInterrupt):
            run_episode(spec, tmp_path, control)
    finally:
        stopper.join()
    assert seen.all_posted.is_set()
    assert time.monotonic() - started < WAIT_S
    assert own_sandboxes() - before == set()
    assert not (tmp_path / spec.episode_id / "result.json").exists()


def test_a_post_longer_than_the_limit_is_refused_and_not_posted() -> None:
    from rdbench.agents.base import TeamSeat
    from rdbench.agents.conversation import ToolRequest
    from rdbench.agents.scaffold import load_scaffold

    board = Board(2)
    seat = TeamSeat(0, 2, board)
    team = load_scaffold("team(workers=2,max_post_chars=10)")
    notes: list[str] = []

    class Context:
        info = TaskInfo(load_task(TASK), "", [], {}, seat=seat)

        def note(self, action: str, text: str = "", **details: Any) -> None:
            notes.append(text)

    context: Any = Context()
    long_post = ToolRequest("1", "board_post", {"message": "x" * 11})
    assert "at most 10 characters" in team.answer(long_post, context)
    assert board.read(1) == [] and notes == []
    short_post = ToolRequest("2", "board_post", {"message": "x" * 10})
    assert team.answer(short_post, context).startswith("Posted")
    assert [post.text for post in board.read(1)] == ["x" * 10] and notes == ["x" * 10]
