"""Starting training: a short random search over linear policies, written to weights.json.

Draws random weight matrices, keeps the one with the best mean return over a few episodes of
Acrobot-v1, and saves it. It is deliberately brief: a few dozen candidates, three episodes
each. `python train.py` runs it (about a minute); `python evaluate.py` scores the result.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import policy


def episode_return(weights: np.ndarray, env: gym.Env, seed: int) -> float:
    """The return of one episode of the linear policy `weights` from seed `seed`."""
    observation, _ = env.reset(seed=seed)
    total = 0.0
    while True:
        action = int(np.argmax(weights @ np.array(policy.features(observation))))
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            return total


def main() -> None:
    """Random search; write the best weights to weights.json."""
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
    rows = ",\n  ".join(json.dumps(row) for row in np.round(best, 6).tolist())
    policy.WEIGHTS.write_text('{"weights": [\n  ' + rows + "\n]}\n", encoding="utf-8")
    print(f"best mean return {best_return:.1f}; wrote {policy.WEIGHTS}")


if __name__ == "__main__":
    main()
