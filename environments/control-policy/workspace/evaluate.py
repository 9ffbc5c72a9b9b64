"""Evaluate policy.py on the public seeds, the way the grader does on its hidden ones.

    python evaluate.py              # mean return over the 10 public seeds
    python evaluate.py --seeds 50   # over seeds 0..49

It runs the policy in this process; the grader runs it in a separate process behind a pipe,
with its own copy of this loop and its own seeds (so editing this file changes nothing there).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import policy


def evaluate(seeds: list[int]) -> list[float]:
    """The return of one episode per seed."""
    env = gym.make("Acrobot-v1")
    returns = []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        if hasattr(policy, "reset"):
            policy.reset()
        total = 0.0
        while True:
            action = policy.act(observation)
            if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
                raise TypeError(f"act() must return an int, got {action!r}")
            observation, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    return returns


def main() -> None:
    """Load the policy, run the episodes, print the returns and their mean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    if hasattr(policy, "load"):
        policy.load()
    start = time.perf_counter()
    returns = evaluate(list(range(args.seeds)))
    print("returns:", " ".join(f"{r:.0f}" for r in returns))
    print(f"mean return over {len(returns)} seeds: {np.mean(returns):.2f} "
          f"({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
