"""The restricted-architecture corpus: a sparse random order-3 Markov chain over 32 tokens.

Which tokens may follow is decided by the last token alone (each token has a few possible
successors); how likely each of them is depends on the last three tokens, through one table per
offset and a table of the (second-to-last, last) pair:

    P(v | a, b, c) ∝ exp(A[c, v] + B[b, v] + C[a, v] + D[b, c, v])   over the successors v of c

Its entropy rate H (nats/token) is computed exactly from the stationary distribution over
triples; it is the floor of any model's expected next-token cross-entropy. Every corpus is
drawn from the stationary chain with its own seed stream (numpy only, deterministic):

    python generate.py --write-public DIR      # writes DIR/corpus.npy (the public corpus)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

SEED = 73125
VOCAB = 32
ORDER = 3
SUCCESSORS = 7  # possible next tokens of each token
SCALES = (1.0, 1.0, 0.8, 0.8)  # spread of A (last token), B, C and D (the pair)
LENGTH = 128  # tokens per sequence in every split
SPLITS = {"public": (1, 8192), "validation": (2, 2048), "test": (3, 2048)}
"""split -> (seed stream, number of sequences of LENGTH tokens)."""
PROBE_STREAM = 100  # seed streams of the causality probes: PROBE_STREAM + split stream


@dataclass(frozen=True)
class Chain:
    """The transition table over states (a, b, c) = the last three tokens."""

    probs: np.ndarray  # [VOCAB**3, VOCAB]: P(next | state), state = (a * VOCAB + b) * VOCAB + c
    stationary: np.ndarray  # [VOCAB**3]: stationary probability of each state

    @property
    def entropy_rate(self) -> float:
        """H = sum over states of pi(state) * entropy of P(. | state), in nats per token."""
        logs = np.log(np.where(self.probs > 0, self.probs, 1.0))
        return float(self.stationary @ -(self.probs * logs).sum(axis=1))


def make_chain() -> Chain:
    """The chain of this task (always the same one)."""
    rng = np.random.default_rng([SEED, 0])
    support = np.zeros((VOCAB, VOCAB), dtype=bool)
    for token in range(VOCAB):
        support[token, rng.choice(VOCAB, SUCCESSORS, replace=False)] = True
    a_scale, b_scale, c_scale, d_scale = SCALES
    last = rng.normal(0.0, a_scale, (VOCAB, VOCAB))
    second = rng.normal(0.0, b_scale, (VOCAB, VOCAB))
    third = rng.normal(0.0, c_scale, (VOCAB, VOCAB))
    pair = rng.normal(0.0, d_scale, (VOCAB, VOCAB, VOCAB))
    logits = (third[:, None, None, :] + second[None, :, None, :] + last[None, None, :, :]
              + pair[None, :, :, :])  # [a, b, c, v]
    logits = np.where(support[None, None, :, :], logits, -np.inf)
    logits -= logits.max(axis=3, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=3, keepdims=True)
    probs = probs.reshape(VOCAB**ORDER, VOCAB)
    return Chain(probs=probs, stationary=_stationary(probs))


def _stationary(probs: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Power iteration on states: (a, b, c) -> (b, c, v) with probability P(v | a, b, c)."""
    n_states = probs.shape[0]
    shaped = probs.reshape(VOCAB, VOCAB**2, VOCAB)
    pi = np.full(n_states, 1.0 / n_states)
    for _ in range(100_000):
        new = np.einsum("as,asv->sv", pi.reshape(VOCAB, VOCAB**2), shaped).reshape(n_states)
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise RuntimeError("the chain's stationary distribution did not converge")


def _cumulative(chain: Chain) -> np.ndarray:
    cumulative = np.cumsum(chain.probs, axis=1)
    cumulative[:, -1] = 1.0
    return cumulative


def _run(cumulative: np.ndarray, state: np.ndarray, steps: int,
         rng: np.random.Generator) -> np.ndarray:
    """`steps` tokens following each of `state` ([rows]), as [rows, steps] uint8."""
    out = np.empty((len(state), steps), dtype=np.uint8)
    for t in range(steps):
        token = (cumulative[state] < rng.random(len(state))[:, None]).sum(axis=1)
        out[:, t] = token
        state = (state % VOCAB ** (ORDER - 1)) * VOCAB + token
    return out


def _start(chain: Chain, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Stationary first states as [rows] state ids and their tokens [rows, ORDER]."""
    state = rng.choice(len(chain.stationary), size=rows, p=chain.stationary)
    digits = [(state // VOCAB**(ORDER - 1 - i)) % VOCAB for i in range(ORDER)]
    return state, np.stack(digits, axis=1).astype(np.uint8)


def sample(chain: Chain, split: str) -> np.ndarray:
    """The tokens of `split`: [sequences, LENGTH] uint8, each row a stationary run."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    stream, rows = SPLITS[split]
    rng = np.random.default_rng([SEED, stream])
    state, head = _start(chain, rows, rng)
    return np.concatenate([head, _run(_cumulative(chain), state, LENGTH - ORDER, rng)], axis=1)


def probe(chain: Chain, split: str, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A second corpus for the causality check, and the cut of each row.

    Row i keeps tokens[i, :cut[i]] and continues with a fresh run of the chain from there, so
    it is as much a sample of the chain as `tokens` is: a model cannot tell the two apart.
    A causal model gives the same predictions for both at every position before the cut.
    """
    stream, rows = SPLITS[split]
    rng = np.random.default_rng([SEED, PROBE_STREAM + stream])
    cut = rng.integers(ORDER + 1, LENGTH, size=rows)
    out = tokens.copy()
    cumulative = _cumulative(chain)
    for position in np.unique(cut):
        index = np.flatnonzero(cut == position)
        state = np.zeros(len(index), dtype=np.int64)
        for i in range(ORDER):
            state = state * VOCAB + tokens[index, position - ORDER + i]
        out[index, position:] = _run(cumulative, state, LENGTH - position, rng)
    return out, cut


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
