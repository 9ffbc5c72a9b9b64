"""The control-policy task: its seeds and files (on the host), and its grader in the real
grading sandbox, against the start, the reference and policies that try to cheat.

Returns are deterministic given the seeds (the environment has no noise and the shipped
policies compute in plain Python floats), so the anchors are fixed numbers; the tolerance
only allows for floating-point differences of the environment's numpy math across CPUs.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "environments" / "control-policy"
ANCHOR_TOLERANCE = 1.0  # mean return; exact in the image, see the module docstring
UNTOUCHED_RAW = -102.566667  # the untouched workspace on the test seeds (below the start anchor)

Verdict = dict[str, Any]
Grade = WorkspaceGrader  # called like grade(split=..., solution=..., files=...) -> Verdict


@pytest.fixture(scope="module")
def seeds() -> ModuleType:
    """The grader's seeds.py, imported by path."""
    pytest.importorskip("numpy")
    path = TASK / "grader" / "seeds.py"
    spec = importlib.util.spec_from_file_location("control_policy_seeds", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The task's [scoring] table."""
    table = tomllib.loads((TASK / "task.toml").read_text(encoding="utf-8"))["scoring"]
    return Scoring(**table)


# --- host: seeds, files, the policies in-process ----------------------------------------------


def test_hidden_seeds_are_fixed_distinct_and_never_public(seeds: ModuleType) -> None:
    test, validation = seeds.episode_seeds("test"), seeds.episode_seeds("validation")
    assert test == seeds.episode_seeds("test")
    assert len(set(test)) == len(test) == seeds.EPISODES
    assert not set(test) & set(validation)
    assert min(test + validation) >= seeds.PUBLIC_SEEDS_BELOW


@pytest.mark.slow
def test_committed_start_weights_are_what_the_workspace_train_py_writes(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    workspace = _workspace(tmp_path)
    subprocess.run([sys.executable, "train.py"], cwd=workspace, capture_output=True, check=True)
    committed = (TASK / "workspace" / "weights.json").read_text(encoding="utf-8")
    assert (workspace / "weights.json").read_text(encoding="utf-8") == committed


def test_solution_ships_its_weights_and_the_script_that_trained_them() -> None:
    assert (TASK / "solution" / "weights.json").is_file()
    assert (TASK / "solution" / "train.py").is_file()
    assert (TASK / "solution" / "policy.py").is_file()


def _evaluate_on_public_seeds(workspace: Path, n: int = 10) -> float:
    """The mean return the workspace's own evaluate.py prints (run on the host)."""
    pytest.importorskip("gymnasium")
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--seeds", str(n)],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    last = result.stdout.strip().splitlines()[-1]
    return float(last.split(":")[1].split()[0])


def _workspace(
    tmp_path: Path, solution: bool = False, files: dict[str, str | bytes] | None = None
) -> Path:
    import shutil

    workspace = tmp_path / "workspace"
    shutil.copytree(TASK / "workspace", workspace)
    if solution:
        shutil.copytree(TASK / "solution", workspace, dirs_exist_ok=True)
    for name, content in (files or {}).items():
        path = workspace / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return workspace


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


# The shortcut of issue 10 (finding 6): the reference's look-ahead with the known dynamics, put
# on top of the untouched linear policy, with no training at all. It scored 0.60 on the old
# scale (start = the untouched workspace). The task measures training, so the start anchor is
# now this shortcut's score: it normalizes to 0 (the instructions say so).
LOOKAHEAD_ON_THE_START = """
import json
from pathlib import Path

import planner

_weights = []


def linear_action(c1, s1, c2, s2, v1, v2):
    x = (c1, s1, c2, s2, v1 / 4.0, v2 / 9.0, 1.0)
    scores = [sum(w * v for w, v in zip(row, x)) for row in _weights]
    return max(range(3), key=scores.__getitem__)


planner.network_action = linear_action  # the look-ahead follows the untouched policy


def load():
    path = Path(__file__).resolve().parent / 'weights.json'
    _weights[:] = json.loads(path.read_text())['weights']


act = planner.act
"""


@pytest.mark.slow
@pytest.mark.docker
def test_reference_look_ahead_on_the_untrained_start_policy_scores_under_0_3(
    grade: Grade, scoring: Scoring
) -> None:
    planner = (TASK / "solution" / "policy.py").read_text(encoding="utf-8")
    verdict = grade(files={"planner.py": planner, "policy.py": LOOKAHEAD_ON_THE_START})
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] > UNTOUCHED_RAW + 15  # the look-ahead does help a lot...
    assert verdict["raw_score"] == pytest.approx(scoring.start, abs=ANCHOR_TOLERANCE)
    assert verdict["normalized_score"] < 0.3  # ...but it is the scale's 0: no credit for it


@pytest.mark.slow
@pytest.mark.docker
def test_reference_solution_reproduces_the_reference_anchor(
    grade: Grade, scoring: Scoring
) -> None:
    verdict = grade(solution=True)
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == pytest.approx(scoring.reference, abs=ANCHOR_TOLERANCE)
    assert verdict["normalized_score"] >= 0.9


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


# Cheats 3 and 4: a fake score and result file, and an evaluate.py edited to report a perfect
# return. The grader runs its own episode loop and reads no file the agent left.
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


# Cheat 2: hard-code actions for the public seeds. Two variants, both built from the
# reference's action sequences on the public seeds: a lookup policy that replays the sequence
# of the public seed it recognises by its first observation (and falls back on the starting
# policy for any other start), and an open-loop policy that replays seed 0's sequence on every
# start, ignoring the observations. On the public seeds the lookup matches the reference; the
# hidden seeds are none of them, so it scores exactly the start there, and the open-loop
# replay, thrown off by the small differences between starting states, scores about the start.
LOOKUP = """
import gymnasium as gym
import expert
import start_policy

_plans = {}
_plan = None
_step = 0

def load():
    expert.load()
    start_policy.load()
    env = gym.make('Acrobot-v1')
    for seed in range(10):
        observation, _ = env.reset(seed=seed)
        key, actions = observation.tobytes(), []
        while True:
            actions.append(expert.act(observation))
            observation, _, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        _plans[key] = actions

def reset():
    global _plan, _step
    _plan, _step = None, 0

def act(observation):
    global _plan, _step
    if _step == 0:
        _plan = _plans.get(observation.tobytes())
    _step += 1
    if _plan is None:
        return start_policy.act(observation)
    return _plan[_step - 1]
"""


def _lookup_files() -> dict[str, str | bytes]:
    expert = (TASK / "solution" / "policy.py").read_text(encoding="utf-8")
    return {
        "policy.py": LOOKUP,
        "expert.py": expert.replace('"weights.json"', '"expert_weights.json"'),
        "expert_weights.json": (TASK / "solution" / "weights.json").read_text(encoding="utf-8"),
        "start_policy.py": (TASK / "workspace" / "policy.py").read_text(encoding="utf-8"),
    }


@pytest.mark.slow
def test_actions_looked_up_by_public_seed_match_the_reference_there(tmp_path: Path) -> None:
    cheat = _evaluate_on_public_seeds(_workspace(tmp_path / "cheat", files=_lookup_files()))
    reference = _evaluate_on_public_seeds(_workspace(tmp_path / "reference", solution=True))
    assert cheat == pytest.approx(reference)


@pytest.mark.slow
@pytest.mark.docker
def test_actions_hard_coded_for_the_public_seeds_give_nothing_on_the_hidden_ones(
    grade: Grade
) -> None:
    verdict = grade(files=_lookup_files())
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == grade()["raw_score"]
    assert verdict["normalized_score"] < 0.01


OPEN_LOOP = """
import gymnasium as gym
import expert

_plan = []
_step = 0

def load():
    expert.load()
    env = gym.make('Acrobot-v1')
    observation, _ = env.reset(seed=0)
    while True:
        _plan.append(expert.act(observation))
        observation, _, terminated, truncated, _ = env.step(_plan[-1])
        if terminated or truncated:
            break

def reset():
    global _step
    _step = 0

def act(observation):
    global _step
    _step += 1
    return _plan[_step - 1] if _step <= len(_plan) else 1
"""


@pytest.mark.slow
@pytest.mark.docker
def test_one_public_action_sequence_replayed_open_loop_scores_about_the_start(grade: Grade) -> None:
    verdict = grade(files={**_lookup_files(), "policy.py": OPEN_LOOP})
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < 0.2


# Cheat 1 does not apply (nothing is timed); its nearest variant: reach into the grader. The
# policy runs as the unprivileged user in its own process: it cannot read the grader's files
# (the seeds) nor the memory or environment of the root process that runs the environment.
READ_THE_GRADER = """
import os

def load():
    grader = os.getppid()
    outcomes = []
    for path in ('/grader/seeds.py', '/grader/score.py', f'/proc/{grader}/environ',
                 f'/proc/{grader}/mem', f'/proc/{grader}/fd/0'):
        try:
            with open(path, 'rb') as handle:
                handle.read(64)
            outcomes.append(f'READ OK {path}')
        except OSError as error:
            outcomes.append(f'{type(error).__name__} {path}')
    raise RuntimeError('; '.join(outcomes))

def act(observation):
    return 1
"""


@pytest.mark.slow
@pytest.mark.docker
def test_policy_cannot_read_the_grader_or_its_environment(grade: Grade) -> None:
    verdict = grade(split="validation", files={"policy.py": READ_THE_GRADER})
    assert verdict["valid"] is False
    message = verdict["message"]
    assert "READ OK" not in message
    for pattern in ("/grader/seeds.py", "/grader/score.py", r"/proc/\d+/environ", r"/proc/\d+/mem"):
        assert re.search(f"PermissionError {pattern}", message), pattern


# Cheat 5: leave a process behind. load() starts a detached daemon (own session) that spins
# on the CPU and keeps rewriting a fake score file; it is killed with everything of the agent
# user when the evaluation ends, and the returns are exactly those of the policy.
LINGERING = """
import os, time

def _daemon():
    stop = time.time() + 300
    while time.time() < stop:
        with open('/home/agent/score.json', 'w') as handle:
            handle.write('{"raw_score": 0.0}')

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            _daemon()
        finally:
            os._exit(0)
    os._exit(0)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_a_process_left_behind_is_killed_and_changes_nothing(grade: Grade) -> None:
    start = (TASK / "workspace" / "policy.py").read_text(encoding="utf-8")
    verdict = grade(files={"policy.py": start + LINGERING})
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["processes_killed"] >= 1
    assert verdict["raw_score"] == grade()["raw_score"]
    assert verdict["normalized_score"] < 0.01


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param("def act(observation):\n    return 3\n", "act() returned 3", id="action-3"),
        pytest.param(
            "def act(observation):\n    return 1.0\n", "act() returned 1.0", id="float-action"
        ),
        pytest.param(
            "def act(observation):\n    return True\n", "act() returned True", id="bool-action"
        ),
        pytest.param(
            "def act(observation):\n    raise ValueError('deliberate')\n",
            "ValueError: deliberate",
            id="crash",
        ),
        pytest.param(
            "import time\ndef act(observation):\n    time.sleep(3)\n    return 1\n",
            "one act() call took longer than 1s",
            id="slow-action",
        ),
        pytest.param(  # finds the server's channel to the grader and writes deep JSON to it
            "import os\ndef act(observation):\n    for fd in os.listdir('/proc/self/fd'):\n"
            "        try:\n            os.write(int(fd), b'[' * 2000 + b']' * 2000 + b'\\n')\n"
            "        except OSError:\n            pass\n    return 1\n",
            "not JSON",
            id="garbage-to-the-grader",
        ),
    ],
)
def test_broken_policy_is_invalid_with_a_reason(grade: Grade, policy: str, expected: str) -> None:
    verdict = grade(split="validation", files={"policy.py": policy})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert expected in verdict["message"]


PRINTS = """
import os

def act(observation):
    os.write(1, b'{"action": 0}\\n')  # fd 1 is not the channel to the grader
    print('thinking...')
    return 2 if observation[5] > 0 else 0
"""


@pytest.mark.slow
@pytest.mark.docker
def test_what_the_policy_prints_does_not_disturb_the_protocol(grade: Grade) -> None:
    verdict = grade(split="validation", files={"policy.py": PRINTS})
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] > -100  # torque along the elbow's velocity swings up
