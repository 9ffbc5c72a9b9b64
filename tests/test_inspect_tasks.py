"""rdbench tasks in Inspect: `inspect eval rdbench/<task-id>` run offline with Inspect's mock
model, scripted to edit the workspace, score and submit; the eval log's score is the one
rdbench's own grading gives the same final workspace, and nothing is left on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai._util.registry import registry_info, registry_lookup
from inspect_ai.log import EvalLog, list_eval_logs, read_eval_log
from inspect_ai.model import ChatMessageTool, ModelOutput, ModelUsage, get_model

from rdbench.grading import default_factory, grade_workspace
from rdbench.resources import environments_dir
from rdbench.sandbox import disk, hostdirs
from rdbench.sandbox.cgroups import CGROUP_ROOT, PARENT
from rdbench.starting_workspace import copy_starting_workspace
from rdbench.task import get_task

TASK = "scaling-law"  # the fastest to grade: its grader reads answer.json
SOLUTION = environments_dir() / TASK / "solution" / "answer.json"
INSPECT = Path(sys.executable).with_name("inspect")


def offline(output: ModelOutput) -> ModelOutput:
    """`output` with its usage given: the mock model would otherwise count tokens with
    tiktoken, which downloads its encoding (network)."""
    output.usage = ModelUsage(input_tokens=100, output_tokens=20, total_tokens=120)
    return output


def scripted_outputs() -> list[ModelOutput]:
    """The mock model's replies: write the reference answer, score it, submit."""
    return [offline(ModelOutput.for_tool_call("mockllm/model", tool, arguments))
            for tool, arguments in (
                ("write_file", {"path": "answer.json", "content": SOLUTION.read_text()}),
                ("score", {}),
                ("submit", {}),
            )]


def final_workspace(folder: Path, *, solved: bool) -> Path:
    """The workspace the scripted run leaves: the task's, with the reference answer.json."""
    copy_starting_workspace(get_task(TASK), folder)
    if solved:
        shutil.copy(SOLUTION, folder / "answer.json")
    return folder


def rdbench_grade(folder: Path) -> tuple[float, float | None]:
    """(normalized, raw): what `rdbench grade` (grade_workspace) gives `folder`, on bwrap."""
    grade = grade_workspace(get_task(TASK), folder, factory=default_factory("bwrap"))
    assert grade.valid, grade.message
    return grade.normalized_score, grade.raw_score


def owned_by(pid: int) -> list[str]:
    """The host folders, disk images and cgroups of rdbench sandboxes process `pid` made."""
    found = [path.name for path in hostdirs.leftovers(pid=pid)]
    found += [str(path) for path in CGROUP_ROOT.glob(f"*/{PARENT}/{pid}-*")]
    return found


def live_sandboxes() -> set[str]:
    """What this process owns of rdbench sandboxes, less its pool of ready disks and their
    templates (kept for the next sandbox, removed at exit)."""
    with disk._templates_lock:
        ready = {path.name for disks in disk._pool.values() for made in disks
                 for path in (made.folder, made.image)}
    return {name for name in owned_by(os.getpid())
            if name not in ready and "-template-" not in name}


def only_score(log: EvalLog) -> tuple[float, dict]:
    """The value and metadata of the one sample's one score."""
    assert log.status == "success", log.error
    assert log.samples is not None and len(log.samples) == 1
    scores = log.samples[0].scores or {}
    assert len(scores) == 1, scores
    score = next(iter(scores.values()))
    return float(score.value), dict(score.metadata or {})  # type: ignore[arg-type]


def tool_outputs(log: EvalLog) -> dict[str, str]:
    """Each tool's (last) output in the sample's messages, by tool name."""
    assert log.samples is not None
    return {message.function or "": message.text for message in log.samples[0].messages
            if isinstance(message, ChatMessageTool)}


def inspect_cli(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """`inspect ARGS` in a subprocess, offline (the mock model calls nothing), with this
    folder importable; (exit code, stderr, pid)."""
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                         os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1"}
    process = subprocess.Popen([str(INSPECT), *args], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stderr, process.pid


def the_log(folder: Path) -> EvalLog:
    """The one eval log in `folder`."""
    logs = list_eval_logs(str(folder))
    assert len(logs) == 1, logs
    return read_eval_log(logs[0])


def test_every_shipped_task_is_an_inspect_task() -> None:
    shipped = sorted(path.parent.name for path in environments_dir().glob("*/task.toml"))
    assert len(shipped) >= 7
    for task_id in shipped:
        found = registry_lookup("task", f"rdbench/{task_id}")
        assert found is not None, f"Inspect's registry has no rdbench/{task_id}"
        assert registry_info(found).name == f"rdbench/{task_id}"


def test_task_input_is_the_env_briefing_and_budget_overrides_apply() -> None:
    from rdbench.env import RDEnv

    found = registry_lookup("task", "rdbench/tabular-credit")
    task = found(steps=7, time_s=600)  # type: ignore[operator]
    sample = task.dataset[0]
    assert sample.input == RDEnv("tabular-credit", budget={"steps": 7, "time_s": 600}).briefing()
    assert "Budget: 7 steps, 600 s of working time" in str(sample.input)
    assert sample.metadata["budget"]["steps"] == 7


@pytest.mark.bwrap
def test_scripted_eval_scores_what_rdbench_grade_gives(bwrap_rootfs: str, tmp_path: Path) -> None:
    before = live_sandboxes()
    model = get_model("mockllm/model", custom_outputs=scripted_outputs())
    [log] = inspect_eval(f"rdbench/{TASK}", model=model, task_args={"sandbox": "bwrap"},
                         log_dir=str(tmp_path / "logs"), display="none")
    value, metadata = only_score(log)
    expected, raw = rdbench_grade(final_workspace(tmp_path / "final", solved=True))
    assert value == expected
    assert value > 0.9  # the reference answer: 1 on the task's scale
    assert metadata["raw_score"] == raw
    assert metadata["valid"] is True and metadata["message"]
    assert metadata["limit_hit"] is None and metadata["steps"] == 3
    outputs = tool_outputs(log)
    assert outputs["score"].startswith("Validation score:")
    assert "Final score" in outputs["submit"]
    assert live_sandboxes() == before  # the env and its sandboxes were closed


@pytest.mark.bwrap
def test_cli_eval_with_the_scripted_model_as_a_solver(bwrap_rootfs: str, tmp_path: Path) -> None:
    solver_file = tmp_path / "scripted.py"
    solver_file.write_text(textwrap.dedent("""
        from inspect_ai.model import get_model
        from inspect_ai.solver import solver

        from rdbench.integrations.inspect.tasks import rdbench_agent
        from test_inspect_tasks import scripted_outputs

        @solver
        def scripted():
            return rdbench_agent(get_model("mockllm/model", custom_outputs=scripted_outputs()))
        """))
    code, stderr, pid = inspect_cli(
        ["eval", f"rdbench/{TASK}", "--model", "mockllm/model", "--solver",
         f"{solver_file}@scripted", "-T", "sandbox=bwrap", "--display", "none",
         "--log-dir", str(tmp_path / "logs")], tmp_path)
    assert code == 0, stderr[-3000:]
    value, metadata = only_score(the_log(tmp_path / "logs"))
    expected, raw = rdbench_grade(final_workspace(tmp_path / "final", solved=True))
    assert value == expected and metadata["raw_score"] == raw
    assert owned_by(pid) == []


@pytest.mark.bwrap
def test_null_run_scores_zero(bwrap_rootfs: str, tmp_path: Path) -> None:
    """A model that never calls a tool: Inspect's message limit ends the solver, the scorer
    ends the episode and grades the untouched workspace: 0, as rdbench grades it."""
    before = live_sandboxes()

    def talk(*_args: object) -> ModelOutput:
        return offline(ModelOutput.from_content("mockllm/model", "I will not use tools."))

    model = get_model("mockllm/model", custom_outputs=talk)
    [log] = inspect_eval(f"rdbench/{TASK}", model=model, task_args={"sandbox": "bwrap"},
                         message_limit=4, log_dir=str(tmp_path / "logs"), display="none")
    value, metadata = only_score(log)
    expected, raw = rdbench_grade(final_workspace(tmp_path / "final", solved=False))
    assert value == expected
    assert value == pytest.approx(0.0, abs=1e-6)  # the start anchor, rounded in task.toml
    assert metadata["raw_score"] == raw
    assert metadata["ended_early"] and metadata["steps"] == 0
    assert live_sandboxes() == before


@pytest.mark.bwrap
def test_tokens_budget_counts_the_samples_model_usage(bwrap_rootfs: str, tmp_path: Path) -> None:
    """Each scripted reply uses 120 tokens: with -T tokens=200 the episode ends at the second
    step (240 tokens used), before submit, and is graded as it is."""
    model = get_model("mockllm/model", custom_outputs=scripted_outputs()[:2])
    [log] = inspect_eval(f"rdbench/{TASK}", model=model, log_dir=str(tmp_path / "logs"),
                         task_args={"sandbox": "bwrap", "tokens": 200}, display="none")
    value, metadata = only_score(log)
    expected, _raw = rdbench_grade(final_workspace(tmp_path / "final", solved=True))
    assert value == expected
    assert metadata["limit_hit"] == "tokens" and metadata["steps"] == 2


@pytest.mark.bwrap
def test_steps_budget_ends_the_episode_and_the_agent(bwrap_rootfs: str, tmp_path: Path) -> None:
    """With -T steps=2 the episode ends after write_file and score (truncated, graded as it
    is); the agent stops there instead of asking the model for a submit it no longer needs."""
    outputs = scripted_outputs()[:2]  # a third model call would fail: nothing is scripted
    model = get_model("mockllm/model", custom_outputs=outputs)
    [log] = inspect_eval(f"rdbench/{TASK}", model=model, log_dir=str(tmp_path / "logs"),
                         task_args={"sandbox": "bwrap", "steps": 2}, display="none")
    value, metadata = only_score(log)
    expected, _raw = rdbench_grade(final_workspace(tmp_path / "final", solved=True))
    assert value == expected
    assert metadata["limit_hit"] == "steps" and metadata["steps"] == 2
    assert "Final score" in tool_outputs(log)["score"]  # the last observation says it ended


def test_only_the_inspect_integration_imports_inspect_ai() -> None:
    package = Path(__file__).parents[1] / "rdbench"
    importers = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if "inspect_ai" in path.read_text()
                 and path.parent != package / "integrations" / "inspect"]
    assert importers == []
    code = "import sys, rdbench, rdbench.env; print('inspect_ai' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert loaded.stdout.strip() == "False"
