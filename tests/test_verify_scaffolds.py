"""Bundles of the new scaffolds' episodes, verified: a real team episode (3 workers on
scaling-law, bwrap) and a real 2-episode relay (the successor scaffold on the toy task), each
run with `rdbench run`, bundled with `rdbench submit` and checked with `rdbench verify`. The
untouched bundles verify clean; each tampering is rejected with the finding that names it.

The agents are scripted (as in test_team.py and test_relay.py): team worker 1 writes the
reference answer, the others leave the start; every worker posts on the board. The relay
agent records the notes it starts with and leaves notes naming its seed. The scaling-law
copy asks for half a CPU and 1 GiB, so that three workers fit a 2-core machine."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents_for_tests import Relayer
from bundle_fixtures import edit_json, rehashed, retamper
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.agents import AGENTS, TaskInfo, Usage
from rdbench.cli import app
from rdbench.submission import WORKERS, Finding, Manifest, VerifiedReport
from rdbench.task import TaskSpec, load_task
from rdbench.verify import verify_bundle
from rdbench.verify_checks import check_consistency, check_handoff, check_team

pytestmark = pytest.mark.bwrap

REPO = Path(__file__).resolve().parents[1]
SCALING_LAW = REPO / "environments" / "scaling-law"
ANSWER = (SCALING_LAW / "solution" / "answer.json").read_text(encoding="utf-8")
FAST_CHECKS = [check_consistency, check_team, check_handoff]  # no sandbox


class Teammate:
    """A team worker: worker 1 writes the reference answer, the others run `true`; each
    posts a hello on the board, then submits."""

    name = "teammate"

    def __init__(self, scaffold: str | None = None):
        self.acts = 0

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Take the seat."""
        assert info.seat is not None
        self.info, self.seat, self.acts = info, info.seat, 0

    def act(self, observation: str) -> dict[str, Any]:
        """Answer (or not), post, submit."""
        self.acts += 1
        if self.acts == 1 and self.seat.index == 1:
            return {"tool": "write_file", "input": {"path": "answer.json", "content": ANSWER}}
        if self.acts == 2:
            hello = f"hello from worker {self.seat.index}"
            self.seat.board.post(self.seat.index, hello)
            self.info.record("scaffold", {"action": "board_post", "text": hello})
        if self.acts < 3:
            return {"tool": "bash", "input": {"command": "true"}}
        return {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """A token a step: the team's usage is the workers' sum."""
        return Usage(input_tokens=self.acts, requests=self.acts)


@dataclass(frozen=True)
class Made:
    """A run, its bundle and the tasks to verify it against."""

    run: Path
    bundle: Path
    tasks: dict[str, TaskSpec]


def _run_and_submit(base: Path, task: Path, agent: str, scaffold: str, runs: int,
                    extra: list[str]) -> Made:
    out = base / "run"
    command = ["run", "--task", str(task), "--agent", agent, "--scaffold", scaffold,
               "--runs", str(runs), "--sandbox", "bwrap", "--parallel", "1", "--out", str(out),
               "--log-json", *extra]
    ran = CliRunner().invoke(app, command)
    assert ran.exit_code == 0, ran.output
    bundle = base / "bundle.tar.gz"
    submitted = CliRunner().invoke(app, ["submit", str(out), "-o", str(bundle), "--name", agent])
    assert submitted.exit_code == 0, submitted.output
    spec = load_task(task)
    return Made(run=out, bundle=bundle, tasks={spec.id: spec})


@pytest.fixture(scope="module")
def agents() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(AGENTS, "teammate", Teammate)
        patch.setitem(AGENTS, "relayer", Relayer)
        yield


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, bwrap_rootfs: str, agents: None) -> Made:
    base = tmp_path_factory.mktemp("team")
    task = base / "scaling-law"
    shutil.copytree(SCALING_LAW, task)
    toml = task / "task.toml"
    text = re.sub(r"(?m)^cpus = .*$", "cpus = 0.5", toml.read_text(encoding="utf-8"))
    toml.write_text(re.sub(r"(?m)^memory_mb = .*$", "memory_mb = 1024", text), encoding="utf-8")
    return _run_and_submit(base, task, "teammate", "team(workers=3)", 1, ["--max-steps", "30"])


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, bwrap_rootfs: str, agents: None) -> Made:
    return _run_and_submit(tmp_path_factory.mktemp("relay"), TOY_TASK, "relayer", "successor",
                           2, [])


def _verify(made: Made, bundle: Path, checks: list[Any] | None = FAST_CHECKS) -> VerifiedReport:
    return verify_bundle(bundle, tasks=made.tasks, backend="bwrap", checks=checks)


def _rejected(report: VerifiedReport, code: str) -> list[Finding]:
    assert report.verdict == "rejected", report.findings
    found = [finding for finding in report.findings if finding.code == code]
    assert found, f"no {code} finding in {report.findings}"
    return found


def _only(manifest: Manifest) -> str:
    (episode,) = manifest.episodes
    return episode


def _by_seed(root: Path, manifest: Manifest) -> dict[int, str]:
    return {json.loads((root / "episodes" / episode / "result.json").read_text())["seed"]: episode
            for episode in manifest.episodes}


def _edit_lines(path: Path, change: Any) -> None:
    """Rewrite a transcript line by line: `change(event)` returns the event, or None to drop."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event = change(json.loads(line))
        if event is not None:
            kept.append(json.dumps(event))
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


# --- the untouched bundles --------------------------------------------------------------------


def test_a_team_bundle_carries_every_workers_files_and_verifies_clean(
    team: Made, tmp_path: Path
) -> None:
    from rdbench.bundle import open_bundle

    with open_bundle(team.bundle) as opened:
        episode = _only(opened.manifest)
        listed = {entry.path for entry in opened.manifest.files}
        for index in range(3):
            for name in ("transcript.jsonl", "workspace.tar.gz"):
                assert f"episodes/{episode}/{WORKERS}/{index}/{name}" in listed
        result = opened.episode(episode).result
    assert result.team is not None and result.team.chosen == 1
    out = tmp_path / "verified.json"
    shown = CliRunner().invoke(app, ["verify", str(team.bundle), "--sandbox", "bwrap",
                                     "--task-dir", str(team.run.parent / "scaling-law"),
                                     "-o", str(out)])
    assert shown.exit_code == 0, shown.output
    report = VerifiedReport.model_validate_json(out.read_text())
    assert (report.verdict, report.findings) == ("verified", [])
    (regraded,) = report.episodes
    assert regraded.regraded_normalized == pytest.approx(result.normalized_score)


def test_a_relay_bundle_carries_the_notes_and_verifies_clean(relay: Made) -> None:
    from rdbench.bundle import open_bundle

    with open_bundle(relay.bundle) as opened:
        seeds = _by_seed(opened.root, opened.manifest)
        notes = opened.root / "episodes" / seeds[0] / "handoff.md"
        assert notes.read_text() == "notes of seed 0: submitted"
        second = (opened.root / "episodes" / seeds[1] / "transcript.jsonl").read_text()
        assert '"handoff_in"' in second
    report = _verify(relay, relay.bundle, checks=None)
    assert (report.verdict, report.findings) == ("verified", [])


# --- team tampering ---------------------------------------------------------------------------


def test_another_chosen_worker_is_rejected(team: Made, tmp_path: Path) -> None:
    def choose_worker_0(root: Path, manifest: Manifest) -> Manifest:
        result = root / "episodes" / _only(manifest) / "result.json"
        data = json.loads(result.read_text())
        edit_json(result, team={**data["team"], "chosen": 0})
        return rehashed(root, manifest)

    report = _verify(team, retamper(team.bundle, tmp_path / "b.tar.gz", choose_worker_0))
    [choice] = _rejected(report, "team-choice-wrong")
    assert "worker 1 has the best validation score" in choice.message
    assert _rejected(report, "team-workspace-mismatch")  # the archive is still worker 1's


def test_validation_scores_rewritten_to_favour_another_worker_fail_the_regrade(
    team: Made, tmp_path: Path
) -> None:
    """A cheat who rewrites the record, the team transcript and the workspace so that worker
    0 seems best: only re-grading every worker on validation shows it."""

    def favour_worker_0(root: Path, manifest: Manifest) -> Manifest:
        folder = root / "episodes" / _only(manifest)
        data = json.loads((folder / "result.json").read_text())
        scores = [1.0, 0.5, 0.0]
        edit_json(folder / "result.json", team={**data["team"], "chosen": 0,
                                                "validation_scores": scores})

        def change(event: dict[str, Any]) -> dict[str, Any]:
            if event["type"] == "scaffold" and event["action"] == "validation":
                event["details"]["normalized_score"] = scores[event["worker"]]
            if event["type"] == "grade":
                event["details"] = {"chosen": 0, "validation_scores": scores}
            return event

        _edit_lines(folder / "transcript.jsonl", change)
        shutil.copyfile(folder / WORKERS / "0" / "workspace.tar.gz", folder / "workspace.tar.gz")
        return rehashed(root, manifest)

    from rdbench.verify_checks import check_team_validation

    report = _verify(team, retamper(team.bundle, tmp_path / "b.tar.gz", favour_worker_0),
                     checks=[check_team, check_team_validation])
    mismatches = _rejected(report, "team-validation-mismatch")
    assert {finding.path for finding in mismatches} >= {f"{WORKERS}/0/workspace.tar.gz",
                                                        f"{WORKERS}/1/workspace.tar.gz"}
    assert any("worker 1 scores" in finding.message
               for finding in _rejected(report, "team-choice-wrong"))


def test_an_edited_worker_transcript_is_rejected_naming_the_worker(
    team: Made, tmp_path: Path
) -> None:
    def drop_an_action(root: Path, manifest: Manifest) -> Manifest:
        path = root / "episodes" / _only(manifest) / WORKERS / "2" / "transcript.jsonl"
        dropped = False

        def change(event: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal dropped
            if event["type"] == "action" and not dropped:
                dropped = True
                return None
            return event

        _edit_lines(path, change)
        return manifest

    stale = _verify(team, retamper(team.bundle, tmp_path / "stale.tar.gz", drop_an_action))
    [modified] = _rejected(stale, "file-modified")
    assert modified.path is not None and modified.path.endswith(f"{WORKERS}/2/transcript.jsonl")

    def drop_and_rehash(root: Path, manifest: Manifest) -> Manifest:
        return rehashed(root, drop_an_action(root, manifest))

    report = _verify(team, retamper(team.bundle, tmp_path / "b.tar.gz", drop_and_rehash))
    steps = _rejected(report, "steps-mismatch")
    assert any(finding.path == f"{WORKERS}/2/transcript.jsonl"
               and finding.message.startswith("worker 2:") for finding in steps)


def test_a_dropped_worker_is_rejected(team: Made, tmp_path: Path) -> None:
    def drop_worker_0(root: Path, manifest: Manifest) -> Manifest:
        shutil.rmtree(root / "episodes" / _only(manifest) / WORKERS / "0")
        return manifest

    stale = _verify(team, retamper(team.bundle, tmp_path / "stale.tar.gz", drop_worker_0))
    assert {finding.path.split("/", 2)[2] for finding in _rejected(stale, "file-missing")
            if finding.path} == {f"{WORKERS}/0/transcript.jsonl", f"{WORKERS}/0/workspace.tar.gz"}

    def drop_and_rehash(root: Path, manifest: Manifest) -> Manifest:
        return rehashed(root, drop_worker_0(root, manifest))

    report = _verify(team, retamper(team.bundle, tmp_path / "b.tar.gz", drop_and_rehash))
    missing = _rejected(report, "team-worker-missing")
    assert {finding.path for finding in missing} == {f"{WORKERS}/0/transcript.jsonl",
                                                     f"{WORKERS}/0/workspace.tar.gz"}


# --- relay tampering --------------------------------------------------------------------------


def test_notes_from_elsewhere_are_rejected(relay: Made, tmp_path: Path) -> None:
    def smuggle(root: Path, manifest: Manifest) -> Manifest:
        second = root / "episodes" / _by_seed(root, manifest)[1] / "transcript.jsonl"

        def change(event: dict[str, Any]) -> dict[str, Any]:
            if event["type"] == "scaffold" and event["action"] == "handoff_in":
                event["text"] = "the answer is 42 (from a human)"
            return event

        _edit_lines(second, change)
        return rehashed(root, manifest)

    report = _verify(relay, retamper(relay.bundle, tmp_path / "b.tar.gz", smuggle))
    [smuggled] = _rejected(report, "handoff-not-from-predecessor")
    assert smuggled.path == "transcript.jsonl" and "differ from the handoff.md" in smuggled.message


def test_predecessor_notes_edited_to_match_are_rejected(relay: Made, tmp_path: Path) -> None:
    """A cheat who changes the notes in, and the predecessor's handoff.md to match: the
    predecessor's transcript shows other notes written."""

    def rewrite(root: Path, manifest: Manifest) -> Manifest:
        seeds = _by_seed(root, manifest)
        notes = "the answer is 42 (from a human)"
        (root / "episodes" / seeds[0] / "handoff.md").write_text(notes)

        def change(event: dict[str, Any]) -> dict[str, Any]:
            if event["type"] == "scaffold" and event["action"] == "handoff_in":
                event["text"] = notes
            return event

        _edit_lines(root / "episodes" / seeds[1] / "transcript.jsonl", change)
        return rehashed(root, manifest)

    report = _verify(relay, retamper(relay.bundle, tmp_path / "b.tar.gz", rewrite))
    [found] = _rejected(report, "handoff-file-mismatch")
    assert found.path == "handoff.md" and found.episode_id is not None
    assert "__seed0__" in found.episode_id
    assert not [finding for finding in report.findings
                if finding.code == "handoff-not-from-predecessor"]


def test_notes_in_the_first_episode_of_a_relay_are_rejected(relay: Made, tmp_path: Path) -> None:
    def notes_for_seed_0(root: Path, manifest: Manifest) -> Manifest:
        first = root / "episodes" / _by_seed(root, manifest)[0] / "transcript.jsonl"
        lines = first.read_text().splitlines()
        reset = json.loads(lines[0])
        extra = {"v": reset["v"], "t": reset["t"], "step": 0, "type": "scaffold",
                 "action": "handoff_in", "text": "notes from a previous run"}
        first.write_text("\n".join([lines[0], json.dumps(extra), *lines[1:]]) + "\n")
        return rehashed(root, manifest)

    report = _verify(relay, retamper(relay.bundle, tmp_path / "b.tar.gz", notes_for_seed_0))
    [found] = _rejected(report, "handoff-not-from-predecessor")
    assert "no episode of the same configuration" in found.message


def test_a_team_archive_that_is_not_the_chosen_workers_is_rejected(
    team: Made, tmp_path: Path
) -> None:
    def swap(root: Path, manifest: Manifest) -> Manifest:
        folder = root / "episodes" / _only(manifest)
        shutil.copyfile(folder / WORKERS / "0" / "workspace.tar.gz", folder / "workspace.tar.gz")
        return rehashed(root, manifest)

    report = _verify(team, retamper(team.bundle, tmp_path / "b.tar.gz", swap))
    [found] = _rejected(report, "team-workspace-mismatch")
    assert found.path == "workspace.tar.gz" and "worker 1" in found.message


def test_the_bundle_layout_names_the_folders_the_runner_writes() -> None:
    from rdbench import relay, team
    from rdbench.bundle import EPISODE_FILES, WORKER_FILES

    assert WORKERS == team.WORKERS
    assert relay.HANDOFF in EPISODE_FILES and relay.HANDOFF in WORKER_FILES
