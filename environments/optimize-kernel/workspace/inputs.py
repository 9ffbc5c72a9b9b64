"""How the grader's inputs are made: batches of token-sequence pairs in three sizes.

The grader draws its hidden inputs with this very code and seeds of its own (one fresh input
per size and timed repeat); `check.py` uses it with public seeds. Each pair is either a
mutated copy (substitutions, insertions, deletions at a random rate) or an unrelated sequence.

    from inputs import SIZES, make_case
    case = make_case(np.random.default_rng(0), "medium")   # a, a_len, b, b_len
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Size:
    """The shape of one input: how many pairs, their lengths, the alphabet."""

    pairs: int
    min_len: int
    max_len: int
    alphabet: int

    @property
    def width_a(self) -> int:
        """Columns of `a` (the longest first sequence)."""
        return self.max_len

    @property
    def width_b(self) -> int:
        """Columns of `b` (insertions may make a second sequence longer than the first)."""
        return self.max_len + self.max_len // 4


SIZES = {
    "short": Size(pairs=3000, min_len=0, max_len=32, alphabet=4),
    "medium": Size(pairs=120, min_len=40, max_len=160, alphabet=20),
    "long": Size(pairs=6, min_len=350, max_len=650, alphabet=4),
}
RELATED_SHARE = 0.8  # pairs whose second sequence is a mutated copy of the first
MAX_MUTATION_RATE = 0.4


def _mutate(rng: np.random.Generator, x: np.ndarray, alphabet: int) -> np.ndarray:
    """`x` with each token deleted, substituted or followed by an insertion, at a random rate."""
    rate = rng.uniform(0.05, MAX_MUTATION_RATE)
    draw = rng.random(len(x))
    substituted = np.where(
        (draw >= rate / 3) & (draw < 2 * rate / 3), rng.integers(0, alphabet, len(x)), x
    )
    kept = draw >= rate / 3
    inserted = (draw >= 2 * rate / 3) & (draw < rate)
    pairs = np.stack([substituted, rng.integers(0, alphabet, len(x))], axis=1)
    return pairs[np.stack([kept, inserted], axis=1)]


def make_case(rng: np.random.Generator, size: str) -> dict[str, np.ndarray]:
    """One input of `size`: `a` (pairs, width_a) and `b` (pairs, width_b) int32 tokens,
    padded with random tokens past `a_len` and `b_len` (int64)."""
    spec = SIZES[size]
    n = spec.pairs
    a = rng.integers(0, spec.alphabet, (n, spec.width_a), dtype=np.int32)
    b = rng.integers(0, spec.alphabet, (n, spec.width_b), dtype=np.int32)
    a_len = rng.integers(spec.min_len, spec.max_len + 1, n)
    b_len = rng.integers(spec.min_len, spec.max_len + 1, n)
    related = rng.random(n) < RELATED_SHARE
    for k in np.flatnonzero(related):
        y = _mutate(rng, a[k, : a_len[k]], spec.alphabet)[: spec.width_b]
        b[k, : len(y)] = y
        b_len[k] = len(y)
    return {"a": a, "a_len": a_len.astype(np.int64), "b": b, "b_len": b_len.astype(np.int64)}
