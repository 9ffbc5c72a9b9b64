"""The hidden episode seeds: one list per split, from seeds the agent never sees.

The workspace's evaluate.py uses the public seeds 0, 1, 2, ...; these are drawn from a large
range, so they never coincide with the public ones (a test checks it).
"""

from __future__ import annotations

import numpy as np

EPISODES = 30
SEEDS = {"validation": 1008994429515588002, "test": 2019617554863260808}
PUBLIC_SEEDS_BELOW = 1_000_000  # the workspace's seeds (and anything an agent might try)


def episode_seeds(split: str) -> list[int]:
    """The `EPISODES` environment seeds of `split`."""
    if split not in SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SEEDS)}")
    rng = np.random.default_rng(SEEDS[split])
    return [int(s) for s in rng.integers(PUBLIC_SEEDS_BELOW, 2**31 - 1, EPISODES)]
