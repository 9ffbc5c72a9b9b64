"""Reference solution: the edit-distance DP vectorized over the batch, one row at a time.

Row i of the DP table of every pair at once, with the insertion chain done by a prefix
minimum: D[i, j] = min_{k <= j} (T[k] + j - k) where T[j] = min(D[i-1, j] + 1,
D[i-1, j-1] + cost) (T[0] = i), so D[i] = cols + minimum.accumulate(T - cols).
Pairs are sorted by length and processed in chunks cut to the chunk's longest sequences, so
little work goes to padding, and the table is int16 (distances stay below 32768).
"""

from __future__ import annotations

import numpy as np

CHUNK = 512


def _chunk_distances(
    a: np.ndarray, a_len: np.ndarray, b: np.ndarray, b_len: np.ndarray
) -> np.ndarray:
    """Distances of a chunk whose arrays are already cut to its longest sequences."""
    n, rows = a.shape
    width = b.shape[1]
    dtype = np.int16 if max(rows, width) < 32_000 else np.int32
    cols = np.arange(width + 1, dtype=dtype)
    previous = np.broadcast_to(cols, (n, width + 1)).copy()
    current = np.empty_like(previous)
    deleted = np.empty((n, width), dtype=dtype)
    out = np.where(a_len == 0, b_len, 0)
    for i in range(1, rows + 1):
        cost = a[:, i - 1 : i] != b
        np.add(previous[:, 1:], 1, out=deleted)
        np.add(previous[:, :-1], cost, out=current[:, 1:], casting="unsafe")
        np.minimum(current[:, 1:], deleted, out=current[:, 1:])
        current[:, 0] = i
        current -= cols
        np.minimum.accumulate(current, axis=1, out=current)
        current += cols
        previous, current = current, previous
        finished = a_len == i
        if finished.any():
            out[finished] = previous[finished, b_len[finished]]
    return out


def edit_distance(
    a: np.ndarray, a_len: np.ndarray, b: np.ndarray, b_len: np.ndarray
) -> np.ndarray:
    """The edit distance of every pair (a[k, :a_len[k]], b[k, :b_len[k]]); (n,) int64."""
    a_len = np.asarray(a_len, dtype=np.int64)
    b_len = np.asarray(b_len, dtype=np.int64)
    out = np.empty(len(a), dtype=np.int64)
    order = np.lexsort((b_len, a_len))
    for start in range(0, len(a), CHUNK):
        idx = order[start : start + CHUNK]
        rows, width = int(a_len[idx].max()), int(b_len[idx].max())
        out[idx] = _chunk_distances(a[idx, :rows], a_len[idx], b[idx, :width], b_len[idx])
    return out
