"""The restricted-architecture corpus: a short-range table mixed with copying from the sequence's
own history (an "induction" process) over 32 tokens.

The first two tokens of a sequence are uniform. After that, the next token x_t depends on the
last two tokens b = x_{t-2}, c = x_{t-1} and on what followed the most recent earlier occurrence
of c in the same sequence, f = x_{s+1} with s < t - 1 the last position where x_s = c:

    P(x_t = v | x_<t) = (1 - COPY) * L(v | b, c) + COPY * [v == f]     (if c occurred before)
    P(x_t = v | x_<t) = L(v | b, c)                                     (if it did not)

L is a sparse random table: only SUCCESSORS tokens may follow each token c, with probabilities
L(v | b, c) proportional to exp(A[c, v] + B[b, v] + D[b, c, v]). The distribution of every
token is an explicit function of the tokens before it, so the loss floor H is the expected
entropy of that distribution over the scored positions 8..127. H is a Monte Carlo estimate
over ENTROPY_ROWS sequences (standard error below 1e-4 nats, see `estimate_entropy_rate`),
stored as ENTROPY_RATE so that grading does not recompute it. A table over the last few tokens
cannot know f; a model that finds the earlier occurrence can.

Every corpus is drawn with its own seed stream (numpy only, deterministic):

    python generate.py --write-public DIR      # writes DIR/corpus.npy (the public corpus)
    python generate.py --entropy-rate          # re-estimates H (a few minutes)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

SEED = 73125
VOCAB = 32
SUCCESSORS = 7  # possible next tokens of each token under the table L
SCALES = (1.0, 1.0, 0.8)  # spread of A (last token), B (the one before) and D (the pair)
COPY = 0.5  # weight of "what followed the last occurrence of the current token"
LENGTH = 128  # tokens per sequence in every split
WARMUP = 8  # the scored positions are WARMUP..LENGTH-1 (as the grader scores them)
SPLITS = {"public": (1, 8192), "validation": (2, 2048), "test": (3, 2048)}
"""split -> (seed stream, number of sequences of LENGTH tokens)."""
PROBE_STREAM = 100  # seed streams of the causality probes: PROBE_STREAM + split stream
ENTROPY_STREAM = 200  # seed stream of the Monte Carlo estimate of H
ENTROPY_ROWS = 1_048_576
ENTROPY_RATE = 1.072887
"""H in nats/token: `python generate.py --entropy-rate` gives 1.072887, standard error 4.4e-05."""
NONE = -1  # "the current token did not occur before"


@dataclass(frozen=True)
class Process:
    """The short-range table L and the copy weight; the rest is the rule in the docstring."""

    local: np.ndarray  # [VOCAB * VOCAB, VOCAB]: L(v | b, c) at row b * VOCAB + c

    @property
    def entropy_rate(self) -> float:
        """H: expected entropy (nats) of the next-token distribution at positions 8..127."""
        return ENTROPY_RATE


def make_chain() -> Process:
    """The process of this task (always the same one)."""
    rng = np.random.default_rng([SEED, 0])
    support = np.zeros((VOCAB, VOCAB), dtype=bool)
    for token in range(VOCAB):
        support[token, rng.choice(VOCAB, SUCCESSORS, replace=False)] = True
    a_scale, b_scale, d_scale = SCALES
    last = rng.normal(0.0, a_scale, (VOCAB, VOCAB))
    second = rng.normal(0.0, b_scale, (VOCAB, VOCAB))
    pair = rng.normal(0.0, d_scale, (VOCAB, VOCAB, VOCAB))
    logits = second[:, None, :] + last[None, :, :] + pair  # [b, c, v]
    logits = np.where(support[None, :, :], logits, -np.inf)
    probs = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs /= probs.sum(axis=2, keepdims=True)
    return Process(local=probs.reshape(VOCAB * VOCAB, VOCAB))


def _follow_state(tokens: np.ndarray) -> np.ndarray:
    """[rows, VOCAB]: for each token, what followed its last occurrence in `tokens` (rows of a
    prefix), NONE where it did not occur before the last position."""
    rows = np.arange(len(tokens))
    follow = np.full((len(tokens), VOCAB), NONE, dtype=np.int64)
    for s in range(tokens.shape[1] - 1):
        follow[rows, tokens[:, s]] = tokens[:, s + 1]
    return follow


def _next_probs(process: Process, b: np.ndarray, c: np.ndarray,
                follow: np.ndarray) -> np.ndarray:
    """P(next | prefix) as [rows, VOCAB], given the last two tokens and the follow state."""
    probs = process.local[b * VOCAB + c]
    copy = follow[np.arange(len(c)), c]
    seen = copy != NONE
    probs[seen] *= 1.0 - COPY
    probs[np.flatnonzero(seen), copy[seen]] += COPY
    return probs


def _continue(process: Process, tokens: np.ndarray, start: int,
              rng: np.random.Generator) -> None:
    """Fill tokens[:, start:] (in place) by running the process on tokens[:, :start]."""
    follow = _follow_state(tokens[:, :start])
    rows = np.arange(len(tokens))
    for t in range(start, tokens.shape[1]):
        b, c = tokens[:, t - 2].astype(np.int64), tokens[:, t - 1].astype(np.int64)
        cumulative = np.cumsum(_next_probs(process, b, c, follow), axis=1)
        cumulative[:, -1] = 1.0
        tokens[:, t] = (cumulative < rng.random(len(tokens))[:, None]).sum(axis=1)
        follow[rows, c] = tokens[:, t]


def _draw(process: Process, rows: int, rng: np.random.Generator) -> np.ndarray:
    tokens = np.empty((rows, LENGTH), dtype=np.uint8)
    tokens[:, :2] = rng.integers(0, VOCAB, size=(rows, 2))
    _continue(process, tokens, 2, rng)
    return tokens


def conditionals(process: Process, tokens: np.ndarray) -> np.ndarray:
    """P(x_t | x_<t) for every row and position t >= 2 as [rows, LENGTH - 2, VOCAB] (float64):
    what the process gave each token of `tokens`, and the best any model can predict."""
    follow = np.full((len(tokens), VOCAB), NONE, dtype=np.int64)
    rows = np.arange(len(tokens))
    out = np.empty((len(tokens), tokens.shape[1] - 2, VOCAB))
    for t in range(2, tokens.shape[1]):
        follow[rows, tokens[:, t - 2]] = tokens[:, t - 1]  # the pair before c, now complete
        b, c = tokens[:, t - 2].astype(np.int64), tokens[:, t - 1].astype(np.int64)
        out[:, t - 2] = _next_probs(process, b, c, follow)
    return out


def sample(chain: Process, split: str) -> np.ndarray:
    """The tokens of `split`: [sequences, LENGTH] uint8."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    stream, rows = SPLITS[split]
    return _draw(chain, rows, np.random.default_rng([SEED, stream]))


def probe(chain: Process, split: str, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A second corpus for the causality check, and the cut of each row.

    Row i keeps tokens[i, :cut[i]] and continues with a fresh run of the process from there,
    so it is as much a sample of the process as `tokens` is: a model cannot tell the two apart.
    A causal model gives the same predictions for both at every position before the cut.
    """
    stream, rows = SPLITS[split]
    rng = np.random.default_rng([SEED, PROBE_STREAM + stream])
    cut = rng.integers(WARMUP, LENGTH, size=rows)
    out = tokens.copy()
    for position in np.unique(cut):
        index = np.flatnonzero(cut == position)
        block = out[index]
        _continue(chain, block, int(position), rng)
        out[index] = block
    return out, cut


def estimate_entropy_rate(process: Process, rows: int = ENTROPY_ROWS,
                          chunk: int = 16_384) -> tuple[float, float]:
    """Monte Carlo H and its standard error: the entropy of P(x_t | x_<t) averaged over the
    scored positions of `rows` fresh sequences (one mean per sequence, then over sequences)."""
    rng = np.random.default_rng([SEED, ENTROPY_STREAM])
    means = []
    for done in range(0, rows, chunk):
        tokens = _draw(process, min(chunk, rows - done), rng)
        probs = conditionals(process, tokens)[:, WARMUP - 2 :]
        logs = np.log(np.where(probs > 0, probs, 1.0))
        means.append(-(probs * logs).sum(axis=2).mean(axis=1))
    per_row = np.concatenate(means)
    return float(per_row.mean()), float(per_row.std(ddof=1) / np.sqrt(len(per_row)))


def write_public(directory: str) -> str:
    """Write the public corpus to `directory`/corpus.npy and return its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "corpus.npy")
    np.save(path, sample(make_chain(), "public"))
    return path


def main() -> None:
    """Command line: write the public corpus, or re-estimate H."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-public", metavar="DIR")
    action.add_argument("--entropy-rate", action="store_true")
    args = parser.parse_args()
    if args.entropy_rate:
        rate, error = estimate_entropy_rate(make_chain())
        print(f"H = {rate:.6f} nats/token (standard error {error:.2g}, {ENTROPY_ROWS} rows)")
    else:
        print(write_public(args.write_public))


if __name__ == "__main__":
    main()
