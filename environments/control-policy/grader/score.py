"""Grade a control-policy workspace: the mean return of its policy network on hidden seeds.

Runs as root in the grading sandbox, beside network.py, seeds.py and rdbench_grading.py:

    python score.py --split validation|test --workspace /home/agent

The policy is the network in the workspace's policy.json (the format: network.py). This grader
reads and checks it, then plays one episode of gymnasium's Acrobot-v1 per hidden seed, all of
them side by side, computing every action itself with the network. No code of the agent runs:
nothing can search ahead with the Acrobot's known equations, keep memory between steps,
recognise an episode, read the grader or outlive it. Nothing else in the workspace is read.

Why a network file and not a policy module (issue 10, finding 6): the environment is known and
has no noise, so any code that may run at every step can search ahead with the equations of
motion and beat every trained policy without training (the one-line rule with a look-ahead on
top scored -64, the trained reference network -73). A per-step CPU limit cannot close that: on
this kind of machine a step's CPU time, measured from outside, jumps by a scheduler tick (4 ms)
now and then, far more than a network needs. The task measures training a policy, so the
policy is what training produces: a network.

The scale (task.toml [scoring]): the start anchor is not the untouched workspace (-102.57 on
the test seeds) but the textbook one-line rule, torque along the lower link's swing (-83.0; as
a network: one linear layer), which needs no training: it, and anything no better, normalizes
to 0. tests/test_control_policy.py grades it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from network import ENV_ID, MAX_FILE_BYTES, NetworkError, network_from_bytes, play
from rdbench_grading import emit, grade_main, read_workspace_file, shown
from seeds import episode_seeds

POLICY_FILE = "policy.json"


def grade(split: str, workspace: str) -> None:
    """Evaluate the workspace's policy network on `split`'s seeds and emit the verdict."""
    data = read_workspace_file(workspace, POLICY_FILE, MAX_FILE_BYTES)  # never through a link
    try:
        network = network_from_bytes(data, POLICY_FILE)
    except NetworkError as error:
        emit(None, valid=False, message=str(error))
    seeds = episode_seeds(split)
    returns = play(network, seeds)
    mean = float(np.mean(returns))
    details: dict[str, Any] = {
        "split": split,
        "episodes": len(seeds),
        "returns": returns,
        "layers": len(network.layers),
        "numbers": network.size(),
    }
    emit(
        mean,
        valid=True,
        message=f"mean return over {len(returns)} {split} episodes of {ENV_ID}: {shown(mean)}",
        details=details,
    )



if __name__ == "__main__":
    grade_main(grade)
