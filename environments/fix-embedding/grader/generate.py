"""The fix-embedding corpus: a sparse random order-2 Markov chain over 64 tokens (numpy only).

The next token depends on the last two. Which tokens may follow is decided by the last token
alone (each token has a few possible successors); how likely each of them is depends on both
of the last two tokens: P(v | a, b) ∝ exp(A[b, v] + B[a, v]) over the successors v of b.
Its entropy rate H (nats/token) is computed exactly from the stationary distribution over
pairs; it is the floor of any model's expected next-token cross-entropy.

Every corpus is drawn from the stationary chain with its own seed stream, so the same split
always gives the same tokens:

    python generate.py --write-public DIR      # writes DIR/corpus.npy (the public corpus)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

SEED = 20251126
VOCAB = 64
ORDER = 2
SUCCESSORS = 6  # possible next tokens of each token
SPLITS = {"public": (1, 64, 1024), "train": (2, 2048, 2048), "validation": (3, 1024, 1024),
          "test": (4, 1024, 1024)}
"""split -> (seed stream, number of independent sequences, tokens per sequence)."""


@dataclass(frozen=True)
class Chain:
    """The transition table of the chain over states (a, b) = the last two tokens."""

    probs: np.ndarray  # [VOCAB * VOCAB, VOCAB]: P(next | state), state = a * VOCAB + b
    stationary: np.ndarray  # [VOCAB * VOCAB]: stationary probability of each state

    @property
    def entropy_rate(self) -> float:
        """H = sum over states of pi(state) * entropy of P(. | state), in nats per token."""
        return float(self.stationary @ _entropy(self.probs))


def _entropy(probs: np.ndarray) -> np.ndarray:
    logs = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(axis=1)


def make_chain() -> Chain:
    """The chain of this task (always the same one)."""
    rng = np.random.default_rng([SEED, 0])
    support = np.zeros((VOCAB, VOCAB), dtype=bool)
    for token in range(VOCAB):
        support[token, rng.choice(VOCAB, SUCCESSORS, replace=False)] = True
    last = rng.normal(0.0, 1.0, (VOCAB, VOCAB))  # A[b, v]
    before = rng.normal(0.0, 1.0, (VOCAB, VOCAB))  # B[a, v]
    logits = last[None, :, :] + before[:, None, :]  # [a, b, v]
    logits = np.where(support[None, :, :], logits, -np.inf)
    logits -= logits.max(axis=2, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    probs = probs.reshape(VOCAB * VOCAB, VOCAB)
    return Chain(probs=probs, stationary=_stationary(probs))


def _stationary(probs: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Power iteration on states: (a, b) -> (b, v) with probability P(v | a, b)."""
    n_states = probs.shape[0]
    pi = np.full(n_states, 1.0 / n_states)
    for _ in range(100_000):
        mass = pi.reshape(VOCAB, VOCAB, 1) * probs.reshape(VOCAB, VOCAB, VOCAB)  # [a, b, v]
        new = mass.sum(axis=0).reshape(n_states)  # new state (b, v)
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise RuntimeError("the chain's stationary distribution did not converge")


def sample(chain: Chain, split: str) -> np.ndarray:
    """The tokens of `split`: [sequences, length] uint8, each row a stationary run."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    stream, rows, length = SPLITS[split]
    rng = np.random.default_rng([SEED, stream])
    cumulative = np.cumsum(chain.probs, axis=1)
    cumulative[:, -1] = 1.0
    tokens = np.empty((rows, length), dtype=np.uint8)
    state = rng.choice(len(chain.stationary), size=rows, p=chain.stationary)
    tokens[:, 0], tokens[:, 1] = state // VOCAB, state % VOCAB
    for t in range(ORDER, length):
        nxt = (cumulative[state] < rng.random(rows)[:, None]).sum(axis=1)
        tokens[:, t] = nxt
        state = (state % VOCAB) * VOCAB + nxt
    return tokens


def write_public(directory: str) -> str:
    """Write the public corpus to `directory`/corpus.npy and return its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "corpus.npy")
    np.save(path, sample(make_chain(), "public"))
    return path


def main() -> None:
    """Command line: write the public corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-public", metavar="DIR", required=True)
    print(write_public(parser.parse_args().write_public))


if __name__ == "__main__":
    main()
