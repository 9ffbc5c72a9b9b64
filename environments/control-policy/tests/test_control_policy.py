"""The control-policy task: its seeds, files and network format (on the host), and its grader
in the real grading sandbox, against the start, the reference, the one-line rule and
workspaces that try to cheat.

Returns are deterministic given the seeds (the environment has no noise and the grader plays a
fixed network), so the anchors are fixed numbers; the tolerance only allows for floating-point
differences of numpy's math across CPUs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "control-policy"
ANCHOR_TOLERANCE = 1.0  # mean return; exact in the image, see the module docstring
UNTOUCHED_RAW = -102.566667  # the untouched workspace on the test seeds (below the start anchor)
NULL_CEILING = 0.3  # issue 10: a shortcut that needs no training scores below this

Verdict = dict[str, Any]
Grade = WorkspaceGrader  # called like grade(split=..., solution=..., files=...) -> Verdict


def _module(path: Path, name: str) -> ModuleType:
    pytest.importorskip("gymnasium")
    return load_module(path, name)


@pytest.fixture(scope="module")
def seeds() -> ModuleType:
    """The grader's seeds.py, imported by path."""
    return _module(TASK / "grader" / "seeds.py", "control_policy_seeds")


@pytest.fixture(scope="module")
def network() -> ModuleType:
    """The grader's network.py, imported by path."""
    return _module(TASK / "grader" / "network.py", "control_policy_network")


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The task's [scoring] table."""
    return task_scoring(TASK)


def one_line_rule() -> str:
    """The textbook rule (action 2 if dtheta2 > 0, else 0) as a one-layer network file."""
    weights = [[0.0, 0.0, 0.0]] * 5 + [[-1.0, 0.0, 1.0]]
    layer = {"weights": weights, "bias": [0.0, 0.0, 0.0], "activation": "linear"}
    return json.dumps({"layers": [layer]})


# --- host: seeds, files, the network format -----------------------------------------------------


def test_hidden_seeds_are_fixed_distinct_and_never_public(seeds: ModuleType) -> None:
    test, validation = seeds.episode_seeds("test"), seeds.episode_seeds("validation")
    assert test == seeds.episode_seeds("test")
    assert len(set(test)) == len(test) == seeds.EPISODES
    assert not set(test) & set(validation)
    assert min(test + validation) >= seeds.PUBLIC_SEEDS_BELOW


@pytest.mark.slow
def test_committed_start_policy_is_what_the_workspace_train_py_writes(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    workspace = tmp_path / "workspace"
    shutil.copytree(TASK / "workspace", workspace)
    subprocess.run([sys.executable, "train.py"], cwd=workspace, capture_output=True, check=True)
    committed = (TASK / "workspace" / "policy.json").read_text(encoding="utf-8")
    assert (workspace / "policy.json").read_text(encoding="utf-8") == committed


def test_solution_ships_its_network_and_the_script_that_trained_it(network: ModuleType) -> None:
    reference = network.load_network(TASK / "solution" / "policy.json")
    assert [layer.activation for layer in reference.layers] == ["tanh", "linear"]
    assert (TASK / "solution" / "train.py").is_file()


def test_the_one_line_rule_network_is_the_rule(network: ModuleType) -> None:
    import numpy as np

    rule = network.network_from_bytes(one_line_rule().encode())
    observations = np.random.default_rng(0).uniform(-3, 3, (500, 6)).astype(np.float32)
    expected = np.where(observations[:, 5] > 0, 2, 0)
    assert (rule.actions(observations) == expected).all()


def _layer(rows: int, columns: int, activation: str = "linear") -> dict[str, Any]:
    return {"weights": [[0.5] * columns] * rows, "bias": [0.0] * columns, "activation": activation}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "not valid JSON", id="deep-nesting"),
        pytest.param(b'{"weights": []}', 'an object with a "layers" list', id="no-layers"),
        pytest.param({"layers": []}, "0 layers; 1 to 8", id="empty"),
        pytest.param({"layers": [_layer(6, 3)] * 9}, "9 layers; 1 to 8", id="too-deep"),
        pytest.param({"layers": [_layer(6, 4)]}, "gives 4 scores; it must give 3", id="4-scores"),
        pytest.param({"layers": [_layer(7, 3)]}, "7 rows; it needs 6", id="7-inputs"),
        pytest.param({"layers": [{**_layer(6, 3), "activation": "exp"}]}, "activation 'exp'",
                     id="unknown-activation"),
        pytest.param({"layers": [{**_layer(6, 3), "bias": [0.0, 0.0]}]}, "bias has 2 numbers",
                     id="short-bias"),
        pytest.param({"layers": [{**_layer(6, 3), "weights": [[1.0, 2.0, 3.0]] * 5 + [[1.0]]}]},
                     "same length", id="ragged"),
        pytest.param({"layers": [{**_layer(6, 3), "weights": [["a", 0, 0]] * 6}]},
                     "every entry must be a number", id="string"),
        pytest.param({"layers": [{**_layer(6, 3), "weights": [[True, 0, 0]] * 6}]},
                     "every entry must be a number", id="bool"),
        pytest.param(b'{"layers": [{"weights": [[NaN, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0],'
                     b' [0, 0, 0], [0, 0, 0]], "bias": [0, 0, 0], "activation": "linear"}]}',
                     "finite", id="nan"),
        pytest.param({"layers": [{**_layer(6, 3), "bias": [10**400, 0, 0]}]}, "finite",
                     id="huge-int"),
        pytest.param({"layers": [_layer(6, 1000), _layer(1000, 1000), _layer(1000, 3)]},
                     "over 1000000 numbers", id="too-big"),
    ],
)
def test_malformed_policy_files_are_refused_with_what_is_wrong(
    network: ModuleType, document: bytes | dict[str, Any], expected: str
) -> None:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(network.NetworkError) as raised:
        network.network_from_bytes(data)
    assert expected in str(raised.value)


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Grade:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


@pytest.mark.slow
@pytest.mark.docker
def test_untouched_workspace_scores_below_the_start_anchor_and_normalizes_to_0(
    grade: Grade, scoring: Scoring
) -> None:
    verdict = grade()
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == pytest.approx(UNTOUCHED_RAW, abs=ANCHOR_TOLERANCE)
    assert verdict["raw_score"] < scoring.start
    assert verdict["normalized_score"] == 0.0
    assert verdict["message"].startswith("mean return over 30 test episodes of Acrobot-v1")


# Issue 10, finding 6: what needs no training must be worth little. The one-line rule beats the
# untouched policy by 20 steps an episode (0.66 on a scale from the untouched workspace); it is
# the start anchor, so it scores 0.
@pytest.mark.slow
@pytest.mark.docker
def test_the_one_line_rule_is_the_start_anchor_and_scores_0(
    grade: Grade, scoring: Scoring
) -> None:
    verdict = grade(files={"policy.json": one_line_rule()})
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] > UNTOUCHED_RAW + 15  # the rule does help a lot...
    assert verdict["raw_score"] == pytest.approx(scoring.start, abs=ANCHOR_TOLERANCE)
    assert verdict["normalized_score"] < NULL_CEILING  # ...but it is the scale's 0


# Issue 10, finding 6, and the look-ahead's cheaper cousin: code that searches ahead with the
# Acrobot's equations at every step (on the untouched policy it scored 0.60 on the old scale;
# on the one-line rule it beat the reference, -64 against -73). The grader runs no code of the
# agent: a policy.py with a look-ahead, a network.py that plays better and a sitecustomize.py
# that would run at any Python start are all ignored, and the score is the network's.
LOOK_AHEAD = """
import math
DT = 0.2
def act(observation):  # the look-ahead (shortened): never imported by the grader
    raise SystemExit('the grader ran the agent code')
"""


@pytest.mark.slow
@pytest.mark.docker
def test_code_that_would_look_ahead_is_never_run(grade: Grade) -> None:
    verdict = grade(
        files={
            "policy.py": LOOK_AHEAD,
            "network.py": "raise SystemExit('the grader imported the agent network.py')\n",
            "sitecustomize.py": "raise SystemExit('the grader ran sitecustomize')\n",
            "usercustomize.py": "raise SystemExit('the grader ran usercustomize')\n",
        }
    )
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == grade()["raw_score"]
    assert verdict["normalized_score"] < 0.01


@pytest.mark.slow
@pytest.mark.docker
def test_reference_solution_is_a_network_of_163_numbers(grade: Grade) -> None:
    verdict = grade(solution=True)  # its anchor: tests/test_tasks_generic.py
    assert verdict["details"]["numbers"] == 7 * 16 + 17 * 3


@pytest.mark.slow
@pytest.mark.docker
def test_grading_is_deterministic_and_validation_differs_from_test(grade: Grade) -> None:
    test = grade()
    validation = grade(split="validation")
    again = WorkspaceGrader(TASK, grade.scratch)(split="validation")  # a fresh, uncached grading
    assert validation["valid"] and again["valid"]
    assert validation["details"]["returns"] == again["details"]["returns"]
    assert validation["details"]["returns"] != test["details"]["returns"]
    assert "30 validation episodes" in validation["message"]


# Fake score and result files, and an evaluate.py edited to report a perfect return: the grader
# plays the network itself and reads no other file.
FAKE_EVALUATE = """
import json
print('mean return over 10 seeds: 0.00')
json.dump({'raw_score': 0.0, 'valid': True}, open('score.json', 'w'))
"""


@pytest.mark.slow
@pytest.mark.docker
def test_fake_score_files_and_an_edited_evaluate_py_are_ignored(grade: Grade) -> None:
    verdict = grade(
        files={
            "score.json": '{"raw_score": 0.0, "valid": true, "message": "mean return 0"}',
            "result.json": '{"raw_score": 0.0, "normalized_score": 3.0}',
            "returns.txt": "0\n" * 30,
            "evaluate.py": FAKE_EVALUATE,
        }
    )
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == grade()["raw_score"]
    assert verdict["normalized_score"] < 0.01


@pytest.mark.slow
@pytest.mark.docker
def test_a_malformed_policy_file_is_invalid_with_the_reason(grade: Grade) -> None:
    layer = {"weights": [[0.0, 0.0, 0.0]] * 6, "bias": [0.0, 0.0], "activation": "linear"}
    verdict = grade(split="validation", files={"policy.json": json.dumps({"layers": [layer]})})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert "layer 1: bias has 2 numbers; it needs 3" in verdict["message"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/grader/seeds.py", "could not be opened", id="link-to-the-grader"),
        pytest.param(None, "there is no policy.json", id="missing"),
    ],
)
def test_a_policy_file_that_is_a_link_or_missing_is_invalid(
    sandbox_image: str, tmp_path: Path, target: str | None, expected: str
) -> None:
    from rdbench.grading import default_factory, grade_workspace
    from rdbench.task import load_task

    task = load_task(TASK)
    workspace = tmp_path / "workspace"
    shutil.copytree(TASK / "workspace", workspace)
    (workspace / "policy.json").unlink()
    if target is not None:
        (workspace / "policy.json").symlink_to(target)
    verdict = grade_workspace(
        task, workspace, split="validation", factory=default_factory("docker")
    ).to_dict()
    assert verdict["valid"] is False
    assert expected in verdict["message"], verdict["message"]
    assert "EPISODES" not in verdict["message"]  # nothing of the grader's file shows
