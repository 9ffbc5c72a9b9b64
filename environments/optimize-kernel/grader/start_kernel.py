"""The starting kernel: Levenshtein edit distances of a batch of token-sequence pairs.

`kernel.py` is the one to make fast: the grader imports it and calls `edit_distance` (keep its
name and signature), which must return exactly what this version returns. `baseline.py` is an
untouched copy that `check.py` compares against.
"""

from __future__ import annotations

import numpy as np


def edit_distance(
    a: np.ndarray, a_len: np.ndarray, b: np.ndarray, b_len: np.ndarray
) -> np.ndarray:
    """The edit distance of every pair (a[k, :a_len[k]], b[k, :b_len[k]]).

    a: (n, width_a) int32 tokens, b: (n, width_b) int32 tokens, a_len and b_len: (n,) int64
    lengths (entries past a length are padding). Returns (n,) int64: the least number of
    single-token insertions, deletions and substitutions that turn one sequence into the other.
    """
    out = np.empty(len(a), dtype=np.int64)
    for k in range(len(a)):
        x = a[k, : a_len[k]].tolist()
        y = b[k, : b_len[k]].tolist()
        previous = list(range(len(y) + 1))
        for i, x_token in enumerate(x, 1):
            current = [i]
            for j, y_token in enumerate(y, 1):
                current.append(
                    min(
                        previous[j] + 1,  # delete x_token
                        current[j - 1] + 1,  # insert y_token
                        previous[j - 1] + (x_token != y_token),  # keep or substitute
                    )
                )
            previous = current
        out[k] = previous[-1]
    return out
