"""The successor and team scaffolds end to end: the claude agent (the real `anthropic` SDK)
against a fake Messages API on loopback, episodes on real tasks in bubblewrap.

- successor: the notes the model writes at the end of an episode appear in the next
  episode's first request;
- team: three workers post on the board and each one's requests show the others' posts; the
  worker whose workspace validates best is the one graded.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fake_servers import FakeServer, Reply, anthropic_message, text, tool_use
from helpers import TOY_TASK

from rdbench.executors import LocalExecutor
from rdbench.records import ScaffoldEvent
from rdbench.relay import HANDOFF
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.scheduling import Resources
from rdbench.task import load_task
from rdbench.transcript import read_events

pytestmark = pytest.mark.bwrap

REPO = Path(__file__).resolve().parents[1]
SCALING_LAW = REPO / "environments" / "scaling-law"
REFERENCE_ANSWER = (SCALING_LAW / "solution" / "answer.json").read_text(encoding="utf-8")
ROOMY = Resources(cpus=64.0, memory_mb=2**20)
WORKER = re.compile(r"You are worker (\d) of a team of 3")


def said(body: dict[str, Any]) -> str:
    """Everything the request's messages hold, as one text."""
    return json.dumps(body.get("messages", []), ensure_ascii=False)


def first_message(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"][0], ensure_ascii=False)


def last_message(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"][-1], ensure_ascii=False)


def test_the_successors_notes_open_the_next_episode(server: FakeServer, tmp_path: Path) -> None:
    written = iter(["NOTES-0: answer.py prints the score; print 5.", "NOTES-1: done."])

    def reply(body: dict[str, Any]) -> Reply:
        if "Write notes for it" in last_message(body):  # the end of an episode
            return anthropic_message(text(next(written)))
        return anthropic_message(tool_use("submit"))

    server.add(*[reply] * 4)
    task = load_task(TOY_TASK)
    specs = [EpisodeSpec(task=task, agent="claude", seed=seed, sandbox="bwrap",
                         scaffold="successor", agent_options={"base_url": server.url})
             for seed in (0, 1)]
    report = LocalExecutor(parallel=2, machine=ROOMY).run(specs, tmp_path)
    assert [result.outcome for result in report.results] == ["submitted", "submitted"]
    assert [result.scaffold for result in report.results] == ["successor(notes_chars=4000)"] * 2

    bodies = [request.body for request in server.requests]
    assert len(bodies) == 4  # each episode: one turn, then the request for notes
    assert "Notes from the previous attempt" not in first_message(bodies[0])
    assert "Write notes for it" in last_message(bodies[1])
    assert "Notes from the previous attempt:\\nNOTES-0: answer.py prints the score; print 5." \
        in first_message(bodies[2])
    first, second = (tmp_path / spec.episode_id for spec in specs)
    assert (first / HANDOFF).read_text() == "NOTES-0: answer.py prints the score; print 5."
    assert (second / HANDOFF).read_text() == "NOTES-1: done."
    handed = {(event.action, event.text) for folder in (first, second)
              for event in read_events(folder) if isinstance(event, ScaffoldEvent)}
    assert {("handoff_out", "NOTES-0: answer.py prints the score; print 5."),
            ("handoff_in", "NOTES-0: answer.py prints the score; print 5."),
            ("handoff_out", "NOTES-1: done.")} <= handed


def test_a_team_shares_its_board_and_submits_the_best_workspace(
    server: FakeServer, tmp_path: Path
) -> None:
    waits = {1: 0, 2: 0, 3: 0}

    def reply(body: dict[str, Any]) -> Reply:
        match = WORKER.search(first_message(body))
        assert match, "every worker is told who it is"
        me = int(match[1])
        if len(body["messages"]) == 1:  # the first turn: post (worker 2 also answers well)
            calls = [tool_use("board_post", {"message": f"hello from worker {me}"})]
            if me == 2:
                calls.insert(0, tool_use("write_file", {"path": "answer.json",
                                                        "content": REFERENCE_ANSWER}))
            return anthropic_message(*calls)
        heard = [other for other in (1, 2, 3)
                 if other != me and f"[worker {other}] hello from worker {other}" in said(body)]
        if len(heard) < 2:  # wait for the others' posts (now and then with an env step:
            waits[me] += 1   # the loop stops a model that calls only the board for long)
            time.sleep(0.1)
            if waits[me] % 10 == 0:
                return anthropic_message(tool_use("bash", {"command": "true"}))
            return anthropic_message(tool_use("board_read"))
        return anthropic_message(tool_use("submit"))

    server.add(*[reply] * 600)
    spec = EpisodeSpec(task=load_task(SCALING_LAW), agent="claude", sandbox="bwrap",
                       scaffold="team(workers=3)", budget={"steps": 90},
                       agent_options={"base_url": server.url})
    result = run_episode(spec, tmp_path)

    assert result.team is not None and result.team.chosen == 1  # worker 2, 0-based 1
    assert result.normalized_score is not None and result.normalized_score > 0.9
    bodies = [request.body for request in server.requests]
    tools = {tool["name"] for tool in bodies[0]["tools"]}
    assert {"board_post", "board_read", "submit"} <= tools
    for me in (1, 2, 3):
        mine = [body for body in bodies if f"You are worker {me} of" in first_message(body)]
        others = [other for other in (1, 2, 3) if other != me]
        assert all(any(f"[worker {other}] hello from worker {other}" in said(body)
                       for body in mine) for other in others)
    posts = sorted((event.worker, event.text) for event in read_events(tmp_path / spec.episode_id)
                   if isinstance(event, ScaffoldEvent) and event.action == "board_post")
    assert posts == [(index, f"hello from worker {index + 1}") for index in range(3)]
