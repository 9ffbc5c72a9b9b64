"""The policy the grader evaluates: a linear policy whose weights are in weights.json.

The grader imports this module in its own process and calls, through a pipe:
- `load()` once, before the first episode (read weights here);
- `reset()` at the start of every episode (optional; this policy keeps no memory);
- `act(observation)` at every step: observation is Acrobot-v1's float32 array of shape (6,)
  [cos t1, sin t1, cos t2, sin t2, dt1, dt2]; return the action 0, 1 or 2 (torque -1, 0, +1).

Keep those names. Everything else (the file format, the model) is yours to change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parent / "weights.json"
_weights: list[list[float]] = []


def features(observation: np.ndarray) -> list[float]:
    """The policy's inputs: the observation, velocities scaled to about [-1, 1], and a bias."""
    c1, s1, c2, s2, v1, v2 = (float(x) for x in observation)
    return [c1, s1, c2, s2, v1 / 4.0, v2 / 9.0, 1.0]


def load() -> None:
    """Read the weights: 3 rows (one per action) of 7 numbers."""
    _weights[:] = json.loads(WEIGHTS.read_text(encoding="utf-8"))["weights"]


def act(observation: np.ndarray) -> int:
    """The action with the highest linear score (plain Python floats: deterministic)."""
    x = features(observation)
    scores = [sum(w * v for w, v in zip(row, x, strict=True)) for row in _weights]
    return max(range(3), key=scores.__getitem__)
