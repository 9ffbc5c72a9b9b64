"""A sweep on the Ray executor (a local Ray instance), resumable, with a relay arm: the
`successor` scaffold's episodes of seeds 0, 1, 2 each start with the notes of the one before,
even with two episodes running at once; the episodes leave the records the local executor
leaves (apart from times and the run's id); a second run runs nothing. The claude agent (the
real `anthropic` SDK) talks to a fake Messages API on loopback; episodes on scaling-law in
bubblewrap."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fake_servers import FakeServer, Reply, anthropic_message, fake_server, text, tool_use
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.records import EpisodeResult, ModelRequestEvent, load_result
from rdbench.relay import HANDOFF
from rdbench.transcript import read_events

pytestmark = pytest.mark.bwrap

TASK = "scaling-law"  # the fastest shipped task to grade: its grader only reads answer.json
NOTES_HEADING = "Notes from the previous attempt"  # as agents/successor.py writes it
NOTES = re.compile(r"NOTES-(\d+)")
# what must differ between two runs of the same sweep in two folders
DIFFERENT = {"elapsed_s", "working_s", "grading_s", "started_at", "finished_at", "run_id"}


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    """A local Ray instance for this module. Its workers inherit the environment it starts
    with, so the claude agent's key is set first. 4 logical CPUs: two scaling-law episodes
    (2 CPUs each) truly run at once."""
    ray = pytest.importorskip("ray")
    previous = os.environ.get("ANTHROPIC_API_KEY")
    os.environ["ANTHROPIC_API_KEY"] = "test-key"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("ANTHROPIC_API_KEY", None)
        else:
            os.environ["ANTHROPIC_API_KEY"] = previous


class Model:
    """The scripted model. Write notes.md, then submit; asked for notes for a successor (the
    end of a successor episode), write NOTES-k, k one more than the predecessor's (0 without
    one): the chain of notes shows which episode saw which.

    While `timed`: the two arms' first requests wait for each other (two episodes provably run
    at once), and the first successor episode holds its notes until all three plain episodes
    started: its successor must wait for it while the plain arm's episodes go by (a
    scheduler that started the next seed early, or that filled its free slot with a waiting
    episode, fails). Each wait gives up after 30 s, so a broken run fails rather than hangs."""

    def __init__(self) -> None:
        self.timed = False
        self.met: list[str] = []  # the models whose first requests met
        self.held = False  # the first successor's notes waited for the plain arm
        self._first: set[str] = set()
        self._plain_started = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(2, timeout=30)
        self._plain_done = threading.Event()

    def __call__(self, body: dict[str, Any]) -> Reply:
        """The reply to one request."""
        messages = body["messages"]
        if self.timed:
            self._wait(body["model"], len(messages) == 1)
        if "Write notes for it" in json.dumps(messages[-1]):
            seen = NOTES.search(json.dumps(messages[0]))
            if seen is None and self.timed:
                self.held = self._plain_done.wait(30)
            number = 0 if seen is None else int(seen[1]) + 1
            return anthropic_message(text(f"NOTES-{number}: notes.md holds the plan; submit."))
        if "tool_result" not in json.dumps(messages):
            return anthropic_message(tool_use("write_file", {"path": "notes.md",
                                                             "content": "the plan\n"}))
        return anthropic_message(tool_use("submit"))

    def _wait(self, model: str, opening: bool) -> None:
        with self._lock:
            first = model not in self._first
            self._first.add(model)
            if opening and model == "fake-plain":
                self._plain_started += 1
                if self._plain_started == 3:
                    self._plain_done.set()
        if first:
            try:
                self._barrier.wait()
            except threading.BrokenBarrierError:
                return
            self.met.append(model)


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def server(model: Model) -> Iterator[FakeServer]:
    with fake_server() as fake:
        fake.add(*[model] * 200)
        yield fake


def _sweep_file(folder: Path, url: str, executor: str) -> Path:
    file = folder / f"relay-{executor}.toml"
    arms = "".join(
        f'[[arm]]\nname = "{name}"\nagent = "claude"\nscaffold = "{name}"\n'
        f'options = {{ model = "fake-{name}", base_url = "{url}" }}\n'
        for name in ("plain", "successor"))
    file.write_text(
        f'name = "relay on {executor}"\ntasks = ["{TASK}"]\nrepetitions = 3\n'
        f'sandbox = "bwrap"\nexecutor = "{executor}"\nparallel = 2\nbaseline = "plain"\n'
        f'tools = ["write_file", "submit"]\n[budget]\nsteps = 5\n{arms}', encoding="utf-8")
    return file


def _sweep(file: Path, out: Path) -> str:
    result = CliRunner().invoke(app, ["sweep", str(file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return result.output


def _results(out: Path) -> dict[str, EpisodeResult]:
    return {folder.name: load_result(folder)
            for folder in sorted(out.iterdir()) if (folder / "result.json").is_file()}


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _first_request(folder: Path) -> str:
    event = next(event for event in read_events(folder) if isinstance(event, ModelRequestEvent))
    return json.dumps(event.messages, ensure_ascii=False)


def test_a_relay_sweep_on_ray_keeps_its_order_and_the_local_records(
    ray_instance: Any, server: FakeServer, model: Model, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    model.timed = True
    output = _sweep(_sweep_file(tmp_path, server.url, "ray"), out)
    model.timed = False
    assert "6 episode(s): 6 run now, 0 skipped" in output
    results = _results(out)
    assert len(results) == 6
    assert {result.outcome for result in results.values()} == {"submitted"}
    assert sorted((result.arm, result.seed) for result in results.values()) == [
        (arm, seed) for arm in ("plain", "successor") for seed in (0, 1, 2)]
    assert sorted(model.met) == ["fake-plain", "fake-successor"]  # two Ray tasks at once
    assert model.held  # the plain arm went by while the relay waited

    relay = {result.seed: out / episode for episode, result in results.items()
             if result.arm == "successor"}
    chain = {result.seed: result for result in results.values() if result.arm == "successor"}
    for seed in (1, 2):  # a relay episode starts once the one before it finished
        assert _when(chain[seed].started_at) >= _when(chain[seed - 1].finished_at)
    assert NOTES_HEADING not in _first_request(relay[0])
    for seed in (1, 2):  # each seed starts with the notes of the seed before it
        notes = (relay[seed - 1] / HANDOFF).read_text(encoding="utf-8")
        assert notes == f"NOTES-{seed - 1}: notes.md holds the plan; submit."
        assert f"{NOTES_HEADING}:\\n{notes}" in _first_request(relay[seed])
    assert (relay[2] / HANDOFF).read_text(encoding="utf-8").startswith("NOTES-2:")
    plain = [out / episode for episode, result in results.items() if result.arm == "plain"]
    assert not any((folder / HANDOFF).exists() for folder in plain)
    assert all(NOTES_HEADING not in _first_request(folder) for folder in plain)

    for name in ("report.md", "report.html", "plots/effects.png", "plots/score-vs-time.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "plots" / "effects.png").read_bytes().startswith(b"\x89PNG")
    assert "successor" in (out / "report.md").read_text(encoding="utf-8")

    asked = len(server.requests)
    again = _sweep(_sweep_file(tmp_path, server.url, "ray"), out)
    assert "6 episode(s): 0 run now, 6 skipped" in again
    assert len(server.requests) == asked  # no model call: nothing ran again
    assert _results(out) == results

    # a relay broken off mid-way resumes on Ray: seed 1 again starts with seed 0's notes (read
    # from the run folder, sent to its Ray task), and seed 2 waits for the new seed 1
    for seed in (1, 2):
        shutil.rmtree(relay[seed])
    resumed = _sweep(_sweep_file(tmp_path, server.url, "ray"), out)
    assert "6 episode(s): 2 run now, 4 skipped" in resumed
    assert {body["model"] for body in (r.body for r in server.requests[asked:])} == {
        "fake-successor"}
    rerun = _results(out)
    for seed in (1, 2):
        assert f"{NOTES_HEADING}:\\nNOTES-{seed - 1}:" in _first_request(relay[seed])
        assert _when(rerun[relay[seed].name].started_at) >= _when(
            rerun[relay[seed - 1].name].finished_at)
    assert (relay[2] / HANDOFF).read_text(encoding="utf-8").startswith("NOTES-2:")

    local = tmp_path / "local"
    _sweep(_sweep_file(tmp_path, server.url, "local"), local)
    here = {episode: result.model_dump(exclude=DIFFERENT)
            for episode, result in _results(local).items()}
    there = {episode: result.model_dump(exclude=DIFFERENT) for episode, result in rerun.items()}
    assert there == here
    for episode in results:
        assert sorted(path.name for path in (out / episode).iterdir()) == sorted(
            path.name for path in (local / episode).iterdir())
        if (out / episode / HANDOFF).exists():
            assert (out / episode / HANDOFF).read_bytes() == (
                local / episode / HANDOFF).read_bytes()
