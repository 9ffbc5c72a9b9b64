"""The hidden inputs: for each split and size one input from seeds the agent never sees, and,
for every timed repeat, an equivalent copy of it.

`inputs.py` (beside this file) is byte for byte the workspace's public `inputs.py`, so the
hidden inputs follow the distribution the agent was told about; only the seeds differ. A copy
relabels the tokens (one random permutation of the alphabet, applied to both sequences of
every pair), shuffles the pairs and redraws the padding: every distance is unchanged (an edit
distance does not depend on the names of the tokens) and so is the work of computing them,
but the bytes differ, and each copy follows the same distribution as the input itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from inputs import SIZES, make_case

SEEDS = {"validation": 1849316738176417042, "test": 6837139312531651674}
SIZE_ORDER = ("short", "medium", "long")
assert set(SIZE_ORDER) == set(SIZES)


def hidden_case(split: str, size: str, repeat: int) -> dict[str, np.ndarray]:
    """The input timed on `size` in repeat `repeat` of a grading on `split`: an equivalent copy
    (see equivalent_copy) of the split's one input of that size."""
    if split not in SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SEEDS)}")
    index = SIZE_ORDER.index(size)
    case = make_case(np.random.default_rng([SEEDS[split], index]), size)
    return equivalent_copy(case, np.random.default_rng([SEEDS[split], index, repeat]), size)


def equivalent_copy(
    case: dict[str, np.ndarray], rng: np.random.Generator, size: str
) -> dict[str, np.ndarray]:
    """`case` with its tokens relabeled, its pairs shuffled and its padding redrawn; the
    distance of pair k of the copy is the distance of pair `order[k]` of `case`."""
    alphabet = SIZES[size].alphabet
    relabel = rng.permutation(alphabet).astype(np.int32)
    order = rng.permutation(len(case["a"]))
    copy = {"a_len": case["a_len"][order], "b_len": case["b_len"][order]}
    for name in ("a", "b"):
        tokens = relabel[case[name][order]]
        padding = np.arange(tokens.shape[1]) >= copy[f"{name}_len"][:, None]
        tokens[padding] = rng.integers(0, alphabet, int(padding.sum()), dtype=np.int32)
        copy[name] = tokens
    return {name: copy[name] for name in ("a", "a_len", "b", "b_len")}


EXAMPLE_SEED = 20250101  # public: the examples in the workspace's data/


def write_examples(directory: str) -> list[str]:
    """Write one public example input per size, with its right answer (from the reference
    kernel, solution/kernel.py: the grader's trusted.py), to `directory`."""
    import importlib.util
    import os

    reference = Path(__file__).resolve().parents[1] / "solution" / "kernel.py"
    spec = importlib.util.spec_from_file_location("reference_kernel", reference)
    assert spec is not None and spec.loader is not None, reference
    kernel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel)
    edit_distance = kernel.edit_distance

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
