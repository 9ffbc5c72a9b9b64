"""The scaling-law task: its ground truth is current and has an optimum to find, its answer
rules are strict, and its grader (in the real grading sandbox, as every episode is graded)
reproduces the anchors and gives nothing to the cheats we could think of.

The grader runs no code of the agent's: it reads answer.json as data and looks the chosen
width up in grader/ground_truth.json (measured offline by grader/measure_ground_truth.py).
The graded target is hidden (lab/hidden_target.py): the agent trains on it only through the
`run_experiment` lab tool, which refuses runs above 1e7 parameter-steps. The workspace's
train.py holds the recipe but no target (the agent supplies one): a public practice target was
tried and dropped, since brute-forcing it at 1e8 still scored about 0.59 normalized.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.env import RDEnv
from rdbench.grading import grade_workspace
from rdbench.task import Scoring, load_task

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "scaling-law"
GROUND_TRUTH = json.loads((TASK / "grader" / "ground_truth.json").read_text(encoding="utf-8"))
EXAMPLE = json.loads((TASK / "workspace" / "example" / "budget_1e6.json").read_text())
REFERENCE_ANSWER = json.loads((TASK / "solution" / "answer.json").read_text(encoding="utf-8"))
HIDDEN_SOURCE = (TASK / "lab" / "hidden_target.py").read_text(encoding="utf-8")
ANCHOR_TOLERANCE = 1e-6  # the grader only looks numbers up: its score is exact

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


@pytest.fixture(scope="module")
def rules() -> ModuleType:
    """The grader's answer rules (grader/answer_rules.py), imported by path."""
    return load_module(TASK / "grader" / "answer_rules.py", "scaling_law_answer_rules")


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The [scoring] table of the task's task.toml."""
    return task_scoring(TASK)


def _answer(**entries: dict[str, Any]) -> str:
    return json.dumps(entries)


def _entry(width: int, budget: float, loss: float) -> dict[str, Any]:
    n = width * width + 11 * width + 1
    return {"width": width, "steps": round(budget / n), "predicted_loss": loss}


# --- the task's files ------------------------------------------------------------------------


def test_ground_truth_was_measured_with_the_current_train_py_and_target() -> None:
    digest = hashlib.sha256((TASK / "workspace" / "train.py").read_bytes()).hexdigest()
    target = hashlib.sha256((TASK / "lab" / "hidden_target.py").read_bytes()).hexdigest()
    assert (GROUND_TRUTH["train_py_sha256"], GROUND_TRUTH.get("hidden_target_sha256")) == (
        digest, target
    ), (
        "workspace/train.py or lab/hidden_target.py changed since grader/ground_truth.json was "
        "measured: rerun grader/measure_ground_truth.py (see its docstring)"
    )


def test_the_hidden_target_is_nowhere_in_the_workspace() -> None:
    tree = ast.parse(HIDDEN_SOURCE)
    hidden = next(
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HIDDEN"
    )
    for path in (TASK / "workspace").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert str(hidden["seed"]).encode() not in text and b"class Teacher" not in text, path


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("not json", "not valid JSON", id="not-json"),
        pytest.param('[1, 2]', "must be an object", id="list"),
        pytest.param(_answer(validation=_entry(32, 1e7, 0.02)), 'no "test" entry', id="missing"),
        pytest.param(
            _answer(test=_entry(64, 1e8, 0.02), best={"width": 64}),
            "unknown top-level keys",
            id="extra-top-level-key",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "confidence": 0.9}),
            "exactly the keys width, steps, predicted_loss",
            id="extra-entry-key",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "width": "64"}),
            "width must be an integer on the grid",
            id="width-as-string",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "width": 64.0}),
            "width must be an integer on the grid",
            id="width-as-float",
        ),
        pytest.param(
            _answer(test=_entry(80, 1e8, 0.02)), "width must be an integer on the grid",
            id="width-off-grid",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "steps": True}),
            "steps must be a positive integer",
            id="steps-as-bool",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "steps": 10**400}),
            "steps must be a positive integer",
            id="steps-huge",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "steps": 30_000}),
            "not the budget",
            id="steps-off-budget",
        ),
        pytest.param(
            '{"test": {"width": 64, "steps": 20829, "predicted_loss": NaN}}',
            "NaN, which is not a number JSON allows",
            id="nan",
        ),
        pytest.param(
            '{"test": {"width": 64, "steps": 20829, "predicted_loss": 1e999}}',
            "predicted_loss must be a number in (0, 10)",
            id="overflowing-float",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "predicted_loss": "0.02"}),
            "predicted_loss must be a number",
            id="loss-as-string",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "predicted_loss": -0.02}),
            "predicted_loss must be a number in (0, 10)",
            id="negative-loss",
        ),
        pytest.param(
            '{"test": {"width": 64, "width": 96, "steps": 20829, "predicted_loss": 0.02}}',
            "repeats the key",
            id="duplicate-key",
        ),
    ],
)
def test_malformed_answers_are_rejected_with_the_reason(
    rules: ModuleType, answer: str, expected: str
) -> None:
    with pytest.raises(rules.AnswerError) as raised:
        rules.parse_entry(answer.encode(), "test")
    assert expected in str(raised.value)


def test_well_formed_answer_is_accepted(rules: ModuleType) -> None:
    answer = _answer(test=_entry(64, 1e8, 0.0135), validation=_entry(32, 1e7, 0.017))
    assert rules.parse_entry(answer.encode(), "test") == (64, 20829, 0.0135)
    assert rules.parse_entry(answer.encode(), "validation") == (32, 7262, 0.017)


# --- the recipe and the reference, rerun in the sandbox image ------------------------------


def _run_in_image(docker_client: Any, image: str, folder: Path, cmd: list[str]) -> str:
    output = docker_client.containers.run(
        image, cmd, volumes={str(folder): {"bind": "/w", "mode": "rw"}}, working_dir="/w",
        network_disabled=True, user="root", remove=True,
    )
    return output.decode()


# --- the lab tool, in a real episode's lab sandbox ------------------------------------------


@pytest.fixture(scope="module")
def episode(sandbox_image: str) -> Any:
    """An episode of the task (Docker), for calling `run_experiment` as the agent does."""
    env = RDEnv(load_task(TASK), sandbox="docker")
    env.reset()
    yield env
    env.close()


def _experiment(env: RDEnv, *runs: dict[str, int]) -> tuple[str, dict[str, Any]]:
    observation, _, _, _, info = env.step(
        {"tool": "run_experiment", "input": {"runs": list(runs)}}
    )
    return observation, info


@pytest.mark.slow
@pytest.mark.docker
def test_run_experiment_reproduces_the_ground_truth(episode: RDEnv) -> None:
    truth = GROUND_TRUTH["budgets"]["validation"]["runs"]["256"]  # the cheapest: 146 steps
    runs = [{"width": 256, "steps": truth["steps"], "seed": seed} for seed in (0, 1)]
    observation, info = _experiment(episode, *runs)
    assert "error" not in info, observation
    results = [json.loads(line) for line in observation.splitlines()]
    assert [r["seed"] for r in results] == [0, 1]
    for result in results:
        assert result["loss"] == pytest.approx(truth["losses"][result["seed"]], rel=1e-6)


# Cheat: brute force. The lab refuses a run at the test budget, and says why.
@pytest.mark.slow
@pytest.mark.docker
def test_run_experiment_refuses_a_run_above_1e7(episode: RDEnv) -> None:
    best = GROUND_TRUTH["budgets"]["test"]["best_width"]
    steps = GROUND_TRUTH["budgets"]["test"]["runs"][str(best)]["steps"]
    observation, info = _experiment(episode, {"width": best, "steps": steps, "seed": 0})
    assert "exit code 2" in info["error"]
    assert observation.startswith("Error: run_experiment failed (exit code 2).")
    assert "above the limit of 1e+07 per run" in observation and "Nothing was run" in observation
    assert "loss" not in observation


@pytest.mark.slow
@pytest.mark.docker
def test_run_experiment_refuses_a_call_above_its_cap(episode: RDEnv) -> None:
    allowed = {"width": 16, "steps": 23094, "seed": 0}  # 1e7 each: four are 4e7 in one call
    observation, _ = _experiment(episode, *[{**allowed, "seed": seed} for seed in range(4)])
    assert "one call may do at most 3e+07 parameter-steps" in observation
    assert "Split them over several calls" in observation


# Cheat: brute force in the workspace. train.py holds no target to brute-force at 1e8: run as
# shipped it refuses to train without one (a practice target, tried first, still gave 0.59).
@pytest.mark.slow
@pytest.mark.docker
def test_workspace_train_py_has_no_target_to_brute_force(
    docker_client: Any, sandbox_image: str, tmp_path: Path
) -> None:
    shutil.copy(TASK / "workspace" / "train.py", tmp_path)
    cmd = ["sh", "-c", "python3 train.py --width 48 --steps 35298 --json 2>&1; echo exit $?"]
    output = _run_in_image(docker_client, sandbox_image, tmp_path, cmd)
    assert "the following arguments are required: --target" in output
    assert output.strip().endswith("exit 2")


@pytest.mark.slow
@pytest.mark.docker
def test_reference_answer_is_what_the_fit_produces(
    docker_client: Any, sandbox_image: str, tmp_path: Path
) -> None:
    for name in ("fit_scaling_law.py", "small_runs.json"):
        shutil.copy(TASK / "solution" / name, tmp_path)
    _run_in_image(docker_client, sandbox_image, tmp_path, ["python3", "fit_scaling_law.py"])
    assert json.loads((tmp_path / "answer.json").read_text()) == REFERENCE_ANSWER


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Grade:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


@pytest.mark.slow
@pytest.mark.docker
def test_validation_scores_another_budget(grade: Grade) -> None:
    validation, test = grade(split="validation", solution=True), grade(solution=True)
    assert validation["valid"] and test["valid"], validation["message"]
    assert validation["details"]["compute"] == 1e7 and test["details"]["compute"] == 1e8
    assert validation["raw_score"] != test["raw_score"]
    assert "1e+08" not in validation["message"]


# Cheat: hard-coding the public example. The example budget's best split (width 16, its
# steps at 1e6, its loss) does not spend the test budget: invalid. Kept at width 16 with the
# steps rescaled to the test budget, it is a poor choice with a poor prediction.
@pytest.mark.slow
@pytest.mark.docker
def test_the_example_budgets_answer_does_not_carry_over(grade: Grade) -> None:
    run = EXAMPLE["runs"]["16"]
    copied = {"width": 16, "steps": run["steps"], "predicted_loss": run["loss"]}
    verdict = grade(files={"answer.json": _answer(test=copied)})
    assert verdict["valid"] is False
    assert "not the budget" in verdict["message"]

    rescaled = _entry(16, 1e8, run["loss"])
    verdict = grade(files={"answer.json": _answer(test=rescaled)})
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < 0.2


# Cheat: a fake score or result file. The grader reads answer.json and nothing else.
@pytest.mark.slow
@pytest.mark.docker
def test_score_and_result_files_are_ignored(grade: Grade, scoring: Scoring) -> None:
    verdict = grade(
        files={
            "score.json": '{"raw_score": 0.0, "valid": true}',
            "result.json": '{"normalized_score": 1.0}',
            "ground_truth.json": json.dumps({"budgets": {"test": {"best_width": 256}}}),
        }
    )
    assert verdict["raw_score"] == pytest.approx(scoring.start, abs=ANCHOR_TOLERANCE)


# Cheat: editing the provided check. The workspace's check_answer.py accepts anything here, but
# the grader applies its own copy of the rules.
@pytest.mark.slow
@pytest.mark.docker
def test_edited_check_answer_does_not_relax_the_rules(grade: Grade) -> None:
    verdict = grade(
        files={
            "check_answer.py": "print('test: ok')\n",
            "answer.json": _answer(test={"width": 64, "steps": 1000, "predicted_loss": 0.01}),
        }
    )
    assert verdict["valid"] is False
    assert "not the budget" in verdict["message"]


# Patching time does not apply (nothing is timed, nothing of the agent's runs); its nearest
# variant is an answer that bends the format, which must be invalid with a clear message.
@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            '{"test": {"width": 64, "steps": 20829, "predicted_loss": NaN}}', "NaN", id="nan"
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "note": "fit by hand"}),
            "exactly the keys width, steps, predicted_loss",
            id="extra-key",
        ),
        pytest.param(
            _answer(test={**_entry(64, 1e8, 0.02), "width": "64"}),
            "width must be an integer",
            id="wrong-type",
        ),
    ],
)
def test_malformed_answer_is_invalid_in_the_sandbox(
    grade: Grade, answer: str, expected: str
) -> None:
    verdict = grade(files={"answer.json": answer})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert expected in verdict["message"]


# A lingering process does not apply either: no agent code runs at grading. A workspace full of
# launchers (a start-up hook, a shell profile, a script that forks a background process)
# grades exactly like its answer.json alone.
LAUNCHER = """\
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"],
                 start_new_session=True)
open("/home/agent/answer.json", "w").write('{"test": {"width": 256, "steps": 1463, '
                                           '"predicted_loss": 0.5}}')
"""


@pytest.mark.slow
@pytest.mark.docker
def test_launcher_scripts_in_the_workspace_change_nothing(grade: Grade) -> None:
    answer = json.dumps(REFERENCE_ANSWER)
    verdict = grade(
        files={
            "answer.json": answer,
            "sitecustomize.py": LAUNCHER,
            ".local/lib/python3.11/site-packages/usercustomize.py": LAUNCHER,
            ".bashrc": "python3 ~/launch.py &\n",
            ".profile": "python3 ~/launch.py &\n",
            "launch.py": LAUNCHER,
        }
    )
    alone = grade(files={"answer.json": answer})
    assert verdict["valid"] and alone["valid"]
    assert verdict["raw_score"] == alone["raw_score"]


# The hidden data: answer.json pointing at the grader's ground truth is never followed, and the
# message gives nothing of it away.
@pytest.mark.slow
@pytest.mark.docker
def test_answer_symlinked_to_the_ground_truth_is_refused(
    sandbox_image: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    shutil.copytree(TASK / "workspace", workspace)
    (workspace / "answer.json").unlink()
    (workspace / "answer.json").symlink_to("/grader/ground_truth.json")
    verdict = grade_workspace(load_task(TASK), workspace, split="validation").to_dict()
    assert verdict["valid"] is False
    assert "symlink" in verdict["message"]
    assert "best_width" not in verdict["message"]
