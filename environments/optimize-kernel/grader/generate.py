"""The hidden inputs: one per split, size and timed repeat, from seeds the agent never sees.

`inputs.py` (beside this file) is byte for byte the workspace's public `inputs.py`, so the
hidden inputs follow the distribution the agent was told about; only the seeds differ.
"""

from __future__ import annotations

import numpy as np
from inputs import SIZES, make_case

SEEDS = {"validation": 1849316738176417042, "test": 6837139312531651674}
SIZE_ORDER = ("short", "medium", "long")
assert set(SIZE_ORDER) == set(SIZES)


def hidden_case(split: str, size: str, repeat: int) -> dict[str, np.ndarray]:
    """The input timed on `size` in repeat `repeat` of a grading on `split`."""
    if split not in SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SEEDS)}")
    rng = np.random.default_rng([SEEDS[split], SIZE_ORDER.index(size), repeat])
    return make_case(rng, size)


EXAMPLE_SEED = 20250101  # public: the examples in the workspace's data/


def write_examples(directory: str) -> list[str]:
    """Write one public example input per size, with its right answer, to `directory`."""
    import os

    from trusted import edit_distance

    os.makedirs(directory, exist_ok=True)
    paths = []
    for index, size in enumerate(SIZE_ORDER):
        case = make_case(np.random.default_rng([EXAMPLE_SEED, index]), size)
        path = os.path.join(directory, f"example-{size}.npz")
        np.savez_compressed(path, **case, expected=edit_distance(**case))
        paths.append(path)
    return paths


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the workspace's public examples.")
    parser.add_argument("--write-examples", metavar="DIR", required=True)
    print("\n".join(write_examples(parser.parse_args().write_examples)))
