"""Relays (the successor scaffold): a run's episodes of one configuration run one after another,
each starting with the notes its predecessor left, also when the run is resumed.

The agent here is scripted and uses TaskInfo.handoff and `end` the way a scaffold does (the
end-to-end versions with the claude agent and the fake server are in test_scaffolds_relay_team.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from agents_for_tests import Relayer
from helpers import TOY_TASK

from rdbench.agents import AGENTS, TaskInfo
from rdbench.executors import LocalExecutor, pack_task, remote_episode
from rdbench.records import ScaffoldEvent
from rdbench.relay import HANDOFF, link, predecessors
from rdbench.runner import EpisodeSpec
from rdbench.scheduling import Resources
from rdbench.task import load_task
from rdbench.transcript import read_events

ROOMY = Resources(cpus=64.0, memory_mb=2**20)  # room for every episode at once


@dataclass
class Started:
    """What a note-taking agent saw when its episode started."""

    seed: int
    handoff: str | None
    predecessor_done: bool


@dataclass
class Log:
    """What the note-taking agents of a test did, in order (from several threads)."""

    started: list[Started] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class NoteTaker(Relayer):
    """A Relayer that also notes, in the test's log, the handoff it starts with and whether
    its predecessor had finished."""

    name = "note-taker"

    def __init__(self, log: Log, out: Path, scaffold: str | None = None):
        super().__init__(scaffold)
        self.log, self.out = log, out

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Note what the episode starts with."""
        done = any(self.out.glob(f"*__seed{info.seed - 1}__*/result.json"))
        with self.log.lock:
            self.log.started.append(Started(info.seed, info.handoff, done))
        super().reset(info, observation)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Log:
    made = Log()
    monkeypatch.setitem(AGENTS, "note-taker",
                        lambda scaffold=None: NoteTaker(made, tmp_path, scaffold))
    return made


def relay_specs(seeds: list[int], scaffold: str | None = "successor") -> list[EpisodeSpec]:
    task = load_task(TOY_TASK)
    return [EpisodeSpec(task=task, agent="note-taker", seed=seed, sandbox="bwrap",
                        scaffold=scaffold) for seed in seeds]


def test_predecessor_is_the_previous_seed_of_the_same_configuration() -> None:
    specs = relay_specs([2, 0, 1])
    other = EpisodeSpec(task=specs[0].task, agent="note-taker", seed=1, sandbox="bwrap",
                        scaffold="successor", budget={"steps": 5})
    plain = relay_specs([0, 1], scaffold="plain")
    links = predecessors([*specs, other, *plain])
    by_seed = {spec.seed: spec.episode_id for spec in specs}
    assert links == {by_seed[1]: by_seed[0], by_seed[2]: by_seed[1]}
    linked = link(specs)
    assert [spec.predecessor for spec in linked] == [by_seed[1], None, by_seed[0]]
    assert [spec.identity for spec in linked] == [spec.identity for spec in specs]


@pytest.mark.bwrap
def test_each_episode_starts_after_its_predecessor_with_its_notes(
    log: Log, tmp_path: Path
) -> None:
    specs = relay_specs([0, 1, 2])
    report = LocalExecutor(parallel=3, machine=ROOMY).run(specs, tmp_path)
    assert [result.outcome for result in report.results] == ["submitted"] * 3
    assert [started.seed for started in log.started] == [0, 1, 2]
    assert [started.handoff for started in log.started] == [
        None, "notes of seed 0: submitted", "notes of seed 1: submitted"]
    assert [started.predecessor_done for started in log.started] == [False, True, True]
    first, second = (tmp_path / spec.episode_id for spec in specs[:2])
    assert (first / HANDOFF).read_text() == "notes of seed 0: submitted"
    out = [event for event in read_events(first) if isinstance(event, ScaffoldEvent)]
    assert [(event.action, event.text) for event in out] == [
        ("handoff_out", "notes of seed 0: submitted")]
    notes_in = [event for event in read_events(second) if isinstance(event, ScaffoldEvent)]
    assert ("handoff_in", "notes of seed 0: submitted") in [
        (event.action, event.text) for event in notes_in]


@pytest.mark.bwrap
def test_a_resumed_relay_keeps_its_chain(log: Log, tmp_path: Path) -> None:
    LocalExecutor(parallel=2, machine=ROOMY).run(relay_specs([0, 1]), tmp_path)
    log.started.clear()
    report = LocalExecutor(parallel=3, machine=ROOMY).run(relay_specs([0, 1, 2]), tmp_path)
    assert len(report.skipped) == 2
    assert [(started.seed, started.handoff) for started in log.started] == [
        (2, "notes of seed 1: submitted")]


@pytest.mark.bwrap
def test_episodes_without_a_relay_scaffold_start_without_notes(
    log: Log, tmp_path: Path
) -> None:
    specs = relay_specs([0, 1], scaffold=None)
    LocalExecutor(parallel=2, machine=ROOMY).run(specs, tmp_path)
    assert all(started.handoff is None for started in log.started)
    # an agent's notes are kept whatever its scaffold (a later relay could read them)
    assert (tmp_path / specs[0].episode_id / HANDOFF).is_file()


@pytest.mark.bwrap
def test_a_ray_task_gets_its_predecessors_notes_with_the_spec(log: Log, tmp_path: Path) -> None:
    first, second = link(relay_specs([0, 1]))
    files = remote_episode(second, pack_task(TOY_TASK), "notes sent along")
    assert [(started.seed, started.handoff) for started in log.started] == [
        (1, "notes sent along")]
    assert files[HANDOFF] == b"notes of seed 1: submitted"
    assert first.episode_id not in "".join(files)  # only the episode's own files come back
