"""The checks `rdbench verify` runs on each episode (rdbench/verify_checks.py), on real short
runs (`rdbench run`, null and oracle agents and an agent that reads the grader, on a copy of
the toy task that ships a check file) and on crafted changes to them: each change is caught
with its code, and an untouched run has no finding at all."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from helpers import toy_task_as
from typer.testing import CliRunner

from rdbench import __version__, verify_checks
from rdbench.agents import TaskInfo, Usage
from rdbench.cli import app
from rdbench.resources import environments_dir
from rdbench.starting_workspace import copy_starting_workspace
from rdbench.submission import AgentEntry, Manifest, TaskEntry
from rdbench.suite import RunConfig
from rdbench.task import TaskSpec, TaskSpecError, load_task
from rdbench.verify_checks import (
    DEFAULT_CHECKS,
    FINDING_CODES,
    CheckContext,
    FolderEpisode,
    check_budget_override,
    check_consistency,
    check_regrade,
    run_checks,
    scan_transcript,
    scan_workspace,
)

CHECK_FILE = "check_answer.py"
CHECK_TEXT = "import subprocess\nprint(subprocess.run(['python3', 'answer.py']).returncode)\n"


class ReadsTheGrader:
    """Tries to read the grader's files, then submits."""

    name = "reads-the-grader"

    def __init__(self) -> None:
        self._plan: deque[dict[str, Any]] = deque()

    def reset(self, info: TaskInfo, observation: str) -> None:
        """One look at the grader."""
        self._plan = deque([{"tool": "bash", "input": {"command": "cat /grader/score.py"}}])

    def act(self, observation: str) -> dict[str, Any]:
        """The look, then submit."""
        return self._plan.popleft() if self._plan else {"tool": "submit", "input": {}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


class NeverSubmits:
    """Runs a harmless command at every step until the steps budget ends the episode."""

    name = "never-submits"

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Nothing to prepare."""

    def act(self, observation: str) -> dict[str, Any]:
        """Look around."""
        return {"tool": "bash", "input": {"command": "ls -la"}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


class FailsAtTheSecondStep(NeverSubmits):
    """Looks once, then its code fails (an agent error)."""

    name = "fails"

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Count the steps."""
        self.steps = 0

    def act(self, observation: str) -> dict[str, Any]:
        """Look, then fail."""
        self.steps += 1
        if self.steps > 1:
            raise RuntimeError("the agent's own bug")
        return super().act(observation)


def _task_with_a_check(folder: Path) -> Path:
    """A copy of the toy task whose workspace ships a check file the task marks as one."""
    task = toy_task_as(folder, "toy-checks")
    (task / "workspace" / CHECK_FILE).write_text(CHECK_TEXT, encoding="utf-8")
    toml = task / "task.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + f'checks = ["{CHECK_FILE}"]\n',
                    encoding="utf-8")
    return task


def _run(out: Path, task: Path, *options: str) -> dict[str, FolderEpisode]:
    """`rdbench run` on docker into `out`; its episodes by agent."""
    result = CliRunner().invoke(app, ["run", "--task", str(task), "--sandbox", "docker",
                                      "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    episodes = [FolderEpisode.read(folder) for folder in sorted(out.iterdir())
                if (folder / "result.json").is_file()]
    return {episode.result.agent.rpartition(":")[2]: episode for episode in episodes}


def _manifest(run: Path, task: TaskSpec) -> Manifest:
    """A manifest of the run folder as a bundle would hold it (no files listed: the checks
    read the run's budgets only)."""
    config = RunConfig.load(run)
    return Manifest(
        name="test", created_at="2026-01-01T00:00:00Z", rdbench_version=__version__,
        agents=[AgentEntry(name=agent.name, options=agent.options, models=[])
                for agent in config.agents],
        tasks=[TaskEntry(id=task.id, version=task.version, content_hash="-")],
        tools=config.tools, budgets=config.budget, seeds=list(config.seeds),
        sandbox=config.sandbox, image_tag="-", image_hash="-", episodes=[], files=[],
    )


class Run:
    """A real run's task, manifest and episodes by agent."""

    def __init__(self, folder: Path, task: TaskSpec, episodes: dict[str, FolderEpisode]):
        self.folder = folder
        self.task = task
        self.manifest = _manifest(folder, task)
        self.episodes = episodes


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Run:
    """null, oracle and ReadsTheGrader on the toy task with a check file, on docker."""
    root = tmp_path_factory.mktemp("verify-checks")
    task = _task_with_a_check(root / "tasks")
    out = root / "run"
    episodes = _run(out, task, "--agent", "null", "--agent", "oracle", "--agent",
                    "test_verify_checks:ReadsTheGrader", "--parallel", "2")
    assert set(episodes) == {"null", "oracle", "ReadsTheGrader"}
    return Run(out, load_task(task), episodes)


def _copy(episode: FolderEpisode, tmp_path: Path) -> FolderEpisode:
    """A writable copy of `episode`'s folder, to change."""
    target = tmp_path / episode.episode_id
    shutil.copytree(episode.folder, target)
    return FolderEpisode.read(target)


def _edit_result(episode: FolderEpisode, **fields: Any) -> FolderEpisode:
    path = episode.folder / "result.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for name, value in fields.items():
        if isinstance(value, dict):
            data[name].update(value)
        else:
            data[name] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return FolderEpisode.read(episode.folder)


def _codes(findings: list[Any]) -> set[str]:
    return {finding.code for finding in findings}


# --- an untouched run ------------------------------------------------------------------------


@pytest.mark.docker
def test_untouched_null_and_oracle_episodes_have_no_findings_and_regrade_to_their_claims(
    run: Run,
) -> None:
    context = CheckContext(backend="docker")
    for agent in ("null", "oracle"):
        episode = run.episodes[agent]
        assert run_checks(episode, run.task, run.manifest, context) == []
    null, oracle = context.regraded
    assert (null.claimed_normalized, null.regraded_normalized) == (0.0, 0.0)
    assert (oracle.claimed_normalized, oracle.regraded_normalized) == (1.0, 1.0)
    assert oracle.regraded_raw == 5.0 and oracle.valid and oracle.tolerance == 1e-9
    assert oracle.episode_id == run.episodes["oracle"].episode_id


# --- (1) re-grade ----------------------------------------------------------------------------


@pytest.mark.docker
def test_an_edited_claimed_score_is_a_regrade_mismatch(run: Run, tmp_path: Path) -> None:
    forged = _edit_result(_copy(run.episodes["null"], tmp_path), raw_score=5.0,
                          normalized_score=1.0)
    context = CheckContext(backend="docker")
    (mismatch,) = check_regrade(forged, run.task, run.manifest, context)
    assert mismatch.code == "regrade-mismatch" and mismatch.severity == "reject"
    assert mismatch.episode_id == forged.episode_id and mismatch.path == "workspace.tar.gz"
    assert "claims normalized 1.0" in mismatch.message and "re-graded" in mismatch.message
    (regraded,) = context.regraded
    assert regraded.claimed_normalized == 1.0 and regraded.regraded_normalized == 0.0
    # the transcript's grade still says 0: the forgery shows there too
    assert _codes(check_consistency(forged, run.task, run.manifest, context)) == {
        "grade-mismatch"}


@pytest.mark.docker
def test_a_positive_claim_without_a_workspace_is_rejected(run: Run, tmp_path: Path) -> None:
    episode = _copy(run.episodes["oracle"], tmp_path)
    (episode.folder / "workspace.tar.gz").unlink()
    context = CheckContext(backend="docker")
    (missing,) = check_regrade(FolderEpisode.read(episode.folder), run.task, run.manifest,
                               context)
    assert missing.code == "workspace-missing" and missing.severity == "reject"
    assert context.regraded[0].regraded_normalized is None


@pytest.mark.docker
def test_a_regrading_that_cannot_run_is_a_regrade_failure(run: Run) -> None:
    context = CheckContext(backend="no-such-backend", attempts=1)
    (failed,) = check_regrade(run.episodes["oracle"], run.task, run.manifest, context)
    assert failed.code == "regrade-failed" and failed.severity == "reject"
    assert "no-such-backend" in failed.message and "not verified" in failed.message
    assert context.regraded[0].regraded_normalized is None


def test_a_task_marking_a_missing_file_as_a_check_is_refused(tmp_path: Path) -> None:
    task = toy_task_as(tmp_path, "toy-bad-checks")
    toml = task / "task.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + 'checks = ["no_such.py"]\n', "utf-8")
    with pytest.raises(TaskSpecError, match=r"\[scoring\] checks names 'no_such.py'"):
        load_task(task)


def test_regrade_tolerance_defaults_to_exact_and_timing_tasks_state_theirs() -> None:
    tasks = {path.parent.name: load_task(path.parent)
             for path in environments_dir().glob("*/task.toml")}
    assert tasks["optimize-kernel"].scoring.regrade_tolerance == pytest.approx(0.08)
    assert tasks["speedup-training"].scoring.regrade_tolerance == pytest.approx(0.33)
    others = {name: task.scoring.regrade_tolerance for name, task in tasks.items()
              if name not in ("optimize-kernel", "speedup-training")}
    assert set(others.values()) == {0.0}


# --- (2) the transcript against the result ---------------------------------------------------


@pytest.mark.docker
def test_edited_steps_disagree_with_the_transcript(run: Run, tmp_path: Path) -> None:
    episode = _edit_result(_copy(run.episodes["oracle"], tmp_path), steps=3)
    findings = check_consistency(episode, run.task, run.manifest, CheckContext())
    assert _codes(findings) == {"steps-mismatch", "outcome-mismatch"}
    steps = next(finding for finding in findings if finding.code == "steps-mismatch")
    assert "2 actions" in steps.message and "steps 3" in steps.message
    assert all(finding.severity == "reject" for finding in findings)


@pytest.mark.docker
def test_a_transcript_missing_an_action_disagrees_with_the_steps(
    run: Run, tmp_path: Path
) -> None:
    episode = _copy(run.episodes["oracle"], tmp_path)
    lines = episode.transcript_path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["step"] != 1]
    episode.transcript_path.write_text("".join(kept), encoding="utf-8")
    findings = check_consistency(episode, run.task, run.manifest, CheckContext())
    assert _codes(findings) == {"steps-mismatch"}
    assert "[2]" in findings[0].message


@pytest.mark.docker
def test_edited_usage_disagrees_with_the_last_usage_event(run: Run, tmp_path: Path) -> None:
    episode = _edit_result(_copy(run.episodes["null"], tmp_path),
                           usage={"total_tokens": 900, "cost_usd": 0.25})
    (finding,) = check_consistency(episode, run.task, run.manifest, CheckContext())
    assert finding.code == "usage-mismatch"
    assert "total_tokens 0 vs 900" in finding.message and "cost_usd" in finding.message


@pytest.mark.docker
def test_an_edited_outcome_disagrees_with_the_submit(run: Run, tmp_path: Path) -> None:
    episode = _edit_result(_copy(run.episodes["null"], tmp_path), outcome="limit",
                           limit_hit="time", terminated=False, truncated=True)
    findings = check_consistency(episode, run.task, run.manifest, CheckContext())
    assert _codes(findings) == {"outcome-mismatch"}
    assert any("the transcript submits" in finding.message for finding in findings)


@pytest.mark.docker
def test_an_unreadable_transcript_is_rejected(run: Run, tmp_path: Path) -> None:
    episode = _copy(run.episodes["null"], tmp_path)
    with episode.transcript_path.open("a", encoding="utf-8") as file:
        file.write('{"type": "grade", "step": "one"}\n{"v": 1}\n')
    (finding,) = check_consistency(episode, run.task, run.manifest, CheckContext())
    assert finding.code == "transcript-unreadable" and "transcript.jsonl:" in finding.message


# --- budgets ---------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_budget_beyond_the_default_is_a_warning_and_undeclared_a_mismatch(
    run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    (episode,) = _run(out, run.task.root, "--agent", "null", "--max-steps", "40").values()
    declared = _manifest(out, run.task)
    assert declared.budgets == {"steps": 40}
    context = CheckContext()
    assert check_consistency(episode, run.task, declared, context) == []
    (raised,) = check_budget_override(episode, run.task, declared, context)
    assert raised.code == "budget-over-default" and raised.severity == "warning"
    assert "steps 40 (task default 20)" in raised.message
    undeclared = declared.model_copy(update={"budgets": {}})
    (mismatch,) = check_consistency(episode, run.task, undeclared, context)
    assert mismatch.code == "budget-mismatch" and mismatch.severity == "reject"


@pytest.mark.docker
def test_episodes_ended_by_a_limit_or_an_agent_error_have_no_findings(
    run: Run, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    episodes = _run(out, run.task.root, "--agent", "test_verify_checks:NeverSubmits",
                    "--agent", "test_verify_checks:FailsAtTheSecondStep", "--max-steps", "3",
                    "--parallel", "2")
    limit, failed = episodes["NeverSubmits"], episodes["FailsAtTheSecondStep"]
    assert (limit.result.outcome, limit.result.limit_hit, limit.result.steps) == (
        "limit", "steps", 3)
    assert (failed.result.outcome, failed.result.steps) == ("agent_error", 1)
    manifest = _manifest(out, run.task)
    context = CheckContext(backend="docker")
    for episode in (limit, failed):
        assert run_checks(episode, run.task, manifest, context) == [], episode.episode_id
    assert [entry.regraded_normalized for entry in context.regraded] == [0.0, 0.0]


# --- (3) signs of gaming: the transcript -----------------------------------------------------


@pytest.mark.docker
def test_an_action_reading_the_grader_is_a_protected_read(run: Run) -> None:
    episode = run.episodes["ReadsTheGrader"]
    context = CheckContext()
    (finding,) = scan_transcript(episode, run.task, run.manifest, context)
    assert finding.code == "protected-read" and finding.severity == "reject"
    assert finding.path == "transcript.jsonl step 1"
    assert "step 1 (bash action)" in finding.message and "cat /grader/score.py" in finding.message
    assert check_consistency(episode, run.task, run.manifest, context) == []  # a real episode
    assert scan_workspace(episode, run.task, run.manifest, context) == []


@pytest.mark.docker
@pytest.mark.docker
@pytest.mark.parametrize(("command", "code"), [
    ("pip install numpy==2.0", "network-attempt"),
    ("python3 -c 'import socket; socket.socket().connect((\"127.0.0.1\", 9))'",
     "network-attempt"),
    ("curl -s http://127.0.0.1:9/", "network-attempt"),
    ("head -c 300 /proc/1/environ", "protected-read"),
    ("ls ../../grader", "protected-read"),
    ("printf 'import time\\ntime.perf_counter = lambda: 0.0\\n' > sitecustomize.py",
     "patch-attempt"),
    ("LD_PRELOAD=/home/agent/fast.so python3 answer.py", "patch-attempt"),
])
def test_a_crafted_action_is_caught_with_its_code(
    run: Run, tmp_path: Path, command: str, code: str
) -> None:
    episode = _copy(run.episodes["oracle"], tmp_path)
    events = [json.loads(line) for line in
              episode.transcript_path.read_text(encoding="utf-8").splitlines()]
    (write,) = [event for event in events if event["type"] == "action" and event["step"] == 1]
    write.update(tool="bash", input={"command": command})
    episode.transcript_path.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    (finding,) = scan_transcript(episode, run.task, run.manifest, CheckContext())
    assert (finding.code, finding.severity) == (code, FINDING_CODES[code][0])
    assert finding.path == "transcript.jsonl step 1" and "step 1 (bash action)" in finding.message


# --- (3) signs of gaming: the workspace ------------------------------------------------------


def _repack(episode: FolderEpisode, changes: dict[str, bytes | None]) -> FolderEpisode:
    """The episode with its workspace archive rewritten: each path of `changes` added or
    replaced (bytes) or removed (None)."""
    assert episode.workspace_path is not None
    archive = episode.workspace_path
    buffer = io.BytesIO()
    with tarfile.open(archive) as source, tarfile.open(fileobj=buffer, mode="w:gz") as target:
        for info in source.getmembers():
            if info.name.removeprefix("./") in changes:
                continue
            target.addfile(info, source.extractfile(info) if info.isreg() else None)
        for name, data in changes.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
    archive.write_bytes(buffer.getvalue())
    return episode


TIME_PATCH = b"import time\ntime.perf_counter = lambda: 0.0\n"


@pytest.mark.docker
@pytest.mark.docker
@pytest.mark.parametrize(("changes", "codes"), [
    ({"sitecustomize.py": TIME_PATCH}, {"interpreter-hook", "timer-patch"}),
    ({".local/lib/python3.11/site-packages/speed.pth": b"import fast_timer\n"},
     {"interpreter-hook"}),
    ({"answer.py": b"print(open('/grader/score.py').read())\nprint(5)\n"}, {"protected-read"}),
    ({"fast.py": b"import os\nos.environ['LD_PRELOAD'] = '/home/agent/libfast.so'\n"},
     {"timer-patch"}),
    ({"fetch.py": b"import requests\nrequests.get('http://127.0.0.1:9')\n"},
     {"network-attempt"}),
    ({CHECK_FILE: b"print(0)\n"}, {"check-edited"}),
    ({CHECK_FILE: None}, {"check-edited"}),
    ({"model.pth": b"PK\x03\x04" + bytes(200)}, set()),  # a PyTorch checkpoint: data
])
def test_a_crafted_workspace_is_caught_with_its_codes(
    run: Run, tmp_path: Path, changes: dict[str, bytes | None], codes: set[str]
) -> None:
    episode = _repack(_copy(run.episodes["oracle"], tmp_path), changes)
    findings = scan_workspace(episode, run.task, run.manifest, CheckContext())
    assert _codes(findings) == codes
    for finding in findings:
        assert finding.severity == FINDING_CODES[finding.code][0]
        assert finding.path is not None and finding.path.startswith("workspace.tar.gz:")
        assert finding.path.removeprefix("workspace.tar.gz:") in changes


@pytest.mark.docker
def test_a_workspace_archive_that_is_no_tar_is_unreadable(run: Run, tmp_path: Path) -> None:
    episode = _copy(run.episodes["null"], tmp_path)
    assert episode.workspace_path is not None
    episode.workspace_path.write_bytes(b"not a gzip tar at all")
    (finding,) = scan_workspace(episode, run.task, run.manifest, CheckContext())
    assert finding.code == "workspace-unreadable" and finding.severity == "reject"


def _packed(folders: list[Path], archive: Path) -> Path:
    """`folders` laid over each other, as a workspace archive."""
    with tarfile.open(archive, "w:gz") as tar:
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    tar.add(path, arcname=path.relative_to(folder).as_posix())
    return archive


SHIPPED = sorted(path.parent.name for path in environments_dir().glob("*/task.toml"))


@pytest.mark.parametrize("task_id", SHIPPED)
def test_shipped_workspaces_and_solutions_raise_no_finding(task_id: str, tmp_path: Path) -> None:
    task = load_task(environments_dir() / task_id)
    start = tmp_path / "start"
    copy_starting_workspace(task, start)  # workspace/ + [workspace] from_grader
    for name, folders in (("workspace", [start]), ("solution", [start, task.solution_dir])):
        archive = _packed(folders, tmp_path / f"{name}.tar.gz")
        episode = FolderEpisode(episode_id=name, folder=tmp_path, result=None,  # type: ignore[arg-type]
                                transcript_path=tmp_path / "none", workspace_path=archive)
        assert scan_workspace(episode, task, None, CheckContext()) == [], name  # type: ignore[arg-type]


@pytest.mark.parametrize("task_id", SHIPPED)
def test_the_oracles_actions_on_shipped_tasks_raise_no_finding(task_id: str) -> None:
    from rdbench.agents.scripted import OracleAgent
    from rdbench.verify_checks.patterns import scan_text, strings_of

    task = load_task(environments_dir() / task_id)
    oracle = OracleAgent()
    oracle.reset(TaskInfo(task, task.instructions, [], {}), "")
    actions = [oracle.act("")]
    while actions[-1]["tool"] != "submit":
        actions.append(oracle.act(""))
    assert len(actions) > 1  # the solution's writes, then the submit
    for action in actions:
        assert scan_text("\n".join(strings_of(action["input"]))) == [], action["tool"]


# --- the finding codes -----------------------------------------------------------------------


def test_every_finding_code_is_in_the_docstring_table_with_its_severity() -> None:
    doc = verify_checks.__doc__ or ""
    rows = {line.split()[0]: line.split()[1] for line in doc.splitlines()
            if line[:1].isalpha() and len(line.split()) > 2 and line.split()[1] in
            ("reject", "warning")}
    assert rows == {code: severity for code, (severity, _) in FINDING_CODES.items()}
    assert DEFAULT_CHECKS[-1] is check_regrade  # the slow one last


def test_every_finding_code_is_explained_in_the_leaderboard_docs() -> None:
    from rdbench.verify_checks import FINDING_CODES

    docs = (Path(__file__).resolve().parents[1] / "docs" / "leaderboard.md").read_text()
    words = set(docs.replace("`", " ").split())
    assert [code for code in FINDING_CODES if code not in words] == []
