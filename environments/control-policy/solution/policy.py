"""Reference policy: a small neural network trained by the cross-entropy method (train.py,
weights in weights.json), improved at every step by looking ahead with Acrobot's known
dynamics.

At each step the policy recovers the state from the observation (the angles from their cosine
and sine, the velocities as given), then, for each of the three actions, simulates taking it
and following the network afterwards until the goal is reached (at most HORIZON steps). It
takes the action that gets there soonest, the network's own choice on a tie or if none gets
there. This is one step of policy iteration: never worse than the network in the model, and
about 7 steps per episode better here. Everything is plain Python floats: the same actions on
every machine, about 5 ms per step.

Same interface as the starting policy: `load()` once, `act(observation)` every step.
"""

from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parent / "weights.json"
HORIZON = 150  # steps simulated ahead at most
DT = 0.2
_columns: dict[str, list[list[float]]] = {}  # weight matrices, one list per column

State = tuple[float, float, float, float]


def load() -> None:
    """Read the network: hidden (7 x 16) and output (17 x 3) matrices, bias rows last."""
    data = json.loads(WEIGHTS.read_text(encoding="utf-8"))
    _columns["hidden"] = [list(column) for column in zip(*data["hidden"], strict=True)]
    _columns["output"] = [list(column) for column in zip(*data["output"], strict=True)]


def network_action(c1: float, s1: float, c2: float, s2: float, v1: float, v2: float) -> int:
    """The network's action for an observation given as six floats."""
    x = (c1, s1, c2, s2, v1 / 4.0, v2 / 9.0, 1.0)
    hidden = [math.tanh(sum(map(operator.mul, x, column))) for column in _columns["hidden"]]
    hidden.append(1.0)
    scores = [sum(map(operator.mul, hidden, column)) for column in _columns["output"]]
    return max(range(3), key=scores.__getitem__)


def derivatives(t1: float, t2: float, v1: float, v2: float, torque: float) -> State:
    """d/dt of the state: Acrobot-v1's book dynamics (unit masses and lengths)."""
    cos_t2, sin_t2 = math.cos(t2), math.sin(t2)
    d1 = 3.5 + cos_t2
    d2 = 1.25 + 0.5 * cos_t2
    phi2 = 4.9 * math.cos(t1 + t2 - math.pi / 2)
    phi1 = -0.5 * v2 * v2 * sin_t2 - v2 * v1 * sin_t2 + 14.7 * math.cos(t1 - math.pi / 2) + phi2
    a2 = (torque + d2 / d1 * phi1 - 0.5 * v1 * v1 * sin_t2 - phi2) / (1.25 - d2 * d2 / d1)
    return v1, v2, -(d2 * a2 + phi1) / d1, a2


def step(state: State, torque: float) -> State:
    """One RK4 step of DT, angles wrapped to [-pi, pi), velocities bounded, as gymnasium does."""
    k1 = derivatives(*state, torque)
    k2 = derivatives(*(x + DT / 2 * k for x, k in zip(state, k1, strict=True)), torque)
    k3 = derivatives(*(x + DT / 2 * k for x, k in zip(state, k2, strict=True)), torque)
    k4 = derivatives(*(x + DT * k for x, k in zip(state, k3, strict=True)), torque)
    t1, t2, v1, v2 = (
        x + DT / 6 * (a + 2 * b + 2 * c + d)
        for x, a, b, c, d in zip(state, k1, k2, k3, k4, strict=True)
    )
    t1 = (t1 + math.pi) % (2 * math.pi) - math.pi
    t2 = (t2 + math.pi) % (2 * math.pi) - math.pi
    return t1, t2, min(max(v1, -4 * math.pi), 4 * math.pi), min(max(v2, -9 * math.pi), 9 * math.pi)


def steps_to_goal(state: State, first: int, limit: int) -> int | None:
    """Steps until the goal when taking `first`, then the network's actions; None if more than
    `limit` would be needed."""
    action = first
    for steps in range(1, limit + 1):
        state = step(state, action - 1.0)
        t1, t2, v1, v2 = state
        if -math.cos(t1) - math.cos(t1 + t2) > 1.0:
            return steps
        action = network_action(math.cos(t1), math.sin(t1), math.cos(t2), math.sin(t2), v1, v2)
    return None


def act(observation: np.ndarray) -> int:
    """The action whose look-ahead reaches the goal soonest (the network's on a tie)."""
    c1, s1, c2, s2, v1, v2 = (float(x) for x in observation)
    state = (math.atan2(s1, c1), math.atan2(s2, c2), v1, v2)
    best = network_action(c1, s1, c2, s2, v1, v2)
    best_steps = steps_to_goal(state, best, HORIZON)
    for action in range(3):
        if action == best:
            continue
        limit = HORIZON if best_steps is None else best_steps - 1
        steps = steps_to_goal(state, action, limit)
        if steps is not None and (best_steps is None or steps < best_steps):
            best, best_steps = action, steps
    return best
