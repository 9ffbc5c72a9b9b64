"""Starting training: a short random search over linear policies, written to policy.json.

Draws random weight matrices, keeps the one with the best mean return over a few episodes of
Acrobot-v1, and saves it as a network of one linear layer (the format: network.py). It is
deliberately brief: a few dozen candidates, three episodes each. `python train.py` runs it
(about a minute); `python evaluate.py` scores the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np

OUT = Path(__file__).resolve().parent / "policy.json"
SCALE = np.array([1.0, 1.0, 1.0, 1.0, 4.0, 9.0])  # velocities to about [-1, 1]


def features(observation: np.ndarray) -> np.ndarray:
    """The candidates' inputs: the observation, velocities scaled, and a constant 1."""
    return np.append(np.asarray(observation, dtype=np.float64) / SCALE, 1.0)


def save(weights: np.ndarray) -> None:
    """Write the linear policy `weights` (3 x 7, on features()) as a one-layer network."""
    layer = {
        "weights": np.round(weights[:, :6] / SCALE, 6).T.tolist(),  # the scaling folded in
        "bias": np.round(weights[:, 6], 6).tolist(),
        "activation": "linear",
    }
    rows = ",\n    ".join(json.dumps(row) for row in layer["weights"])
    OUT.write_text(
        '{"layers": [{\n  "weights": [\n    ' + rows + '\n  ],\n  "bias": '
        + json.dumps(layer["bias"]) + ',\n  "activation": "linear"\n}]}\n',
        encoding="utf-8",
    )


def episode_return(weights: np.ndarray, env: gym.Env, seed: int) -> float:
    """The return of one episode of the linear policy `weights` from seed `seed`."""
    observation, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        action = int(np.argmax(weights @ features(observation)))
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            return total


def main() -> None:
    """Random search; write the best policy to policy.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    env = gym.make("Acrobot-v1")
    best, best_return = None, -np.inf
    for candidate in range(args.candidates):
        weights = rng.standard_normal((3, 7))
        seeds = range(1000 + candidate * args.episodes, 1000 + (candidate + 1) * args.episodes)
        mean = float(np.mean([episode_return(weights, env, seed) for seed in seeds]))
        print(f"candidate {candidate}: mean return {mean:.1f}")
        if mean > best_return:
            best, best_return = weights, mean
    assert best is not None
    save(best)
    print(f"best mean return {best_return:.1f}; wrote {OUT}")


if __name__ == "__main__":
    main()
