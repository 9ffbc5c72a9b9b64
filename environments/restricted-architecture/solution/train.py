"""Fit the reference model of model.py to data/corpus.npy and save its weights to model.pt.

    python train.py [--iterations 30]

The process behind the corpus mixes a table of the last two tokens with copying what followed
the previous occurrence of the current token (see model.py). This script finds, for every
position of the corpus, that copied token (in numpy: training is not restricted), then fits the
table L(v | b, c) and the copy weight by expectation-maximization of the mixture's likelihood:
each token is split between "from the table" and "copied" in proportion to how likely each
explains it. The weights are the log-table and the log-gain of the copied token. It takes a few
seconds. The last 512 sequences are held out: the script prints their cross-entropy (positions
8..127, as the grader scores them) and how far it is above the floor.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import CONTEXTS, PAD, VOCAB, build_model

HERE = Path(__file__).resolve().parent
ENTROPY_RATE = 1.0729  # nats/token: the floor of the cross-entropy (see instructions.md)
HOLDOUT = 512
WARMUP = 8
SMOOTHING = 0.05  # pseudo-count spread over the tokens of each row of the table
FLOOR = -30.0  # log-probability given to tokens the table never saw after (b, c)


def copy_targets(tokens: np.ndarray) -> np.ndarray:
    """[rows, length]: the token that followed the last earlier occurrence of tokens[:, t],
    -1 where there is none (what model.py's `copied` computes, as ids)."""
    rows = np.arange(len(tokens))
    follow = np.full((len(tokens), VOCAB), -1, dtype=np.int64)
    out = np.full(tokens.shape, -1, dtype=np.int64)
    for t in range(tokens.shape[1]):
        if t:  # the pair (t - 1, t) is complete: position t - 1 < t counts as earlier
            follow[rows, tokens[:, t - 1]] = tokens[:, t]
        out[:, t] = follow[rows, tokens[:, t]]
    return out


def fit(tokens: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """The table L [CONTEXTS, VOCAB] and the copy weight, by expectation-maximization."""
    previous = np.concatenate([np.full((len(tokens), 1), PAD), tokens[:, :-1]], axis=1)
    context = (previous * VOCAB + tokens)[:, :-1].ravel()
    target = tokens[:, 1:].ravel()
    copy = copy_targets(tokens)[:, :-1].ravel()
    seen, hit = copy >= 0, copy == target
    table = np.full((CONTEXTS, VOCAB), 1.0 / VOCAB)
    weight = 0.5
    for _ in range(iterations):
        local = (1.0 - weight) * table[context, target]
        share = np.where(seen, local / (local + weight * hit), 1.0)  # P(from the table | token)
        counts = np.zeros((CONTEXTS, VOCAB))
        np.add.at(counts, (context, target), share)
        weight = float(1.0 - share[seen].mean())
        table = (counts + SMOOTHING / VOCAB) / (counts.sum(axis=1, keepdims=True) + SMOOTHING)
    return table, weight


def held_out_loss(model: torch.nn.Module, tokens: torch.Tensor) -> float:
    """Cross-entropy (nats/token) of predicting tokens[:, t + 1] at positions t >= WARMUP - 1."""
    model.eval()
    with torch.no_grad():
        logits = model(tokens)[:, WARMUP - 1 : -1]
        return float(F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, WARMUP:].reshape(-1)))


def main() -> None:
    """Fit, report the held-out loss, save model.pt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    started = time.time()
    corpus = np.load(HERE / "data" / "corpus.npy").astype(np.int64)
    table, weight = fit(corpus[:-HOLDOUT], args.iterations)
    base = np.maximum(np.log(table), FLOOR)
    bonus = np.maximum(np.log((1.0 - weight) * table + weight), FLOOR) - np.maximum(
        np.log((1.0 - weight) * table), FLOOR)
    model = build_model()
    model.load_state_dict({"base.weight": torch.tensor(base, dtype=torch.float32),
                           "bonus.weight": torch.tensor(bonus, dtype=torch.float32)})
    held = held_out_loss(model, torch.from_numpy(corpus[-HOLDOUT:]))
    print(f"copy weight {weight:.4f}; held-out cross-entropy {held:.4f}, "
          f"log(loss - floor) {math.log(max(held - ENTROPY_RATE, 1e-6)):.3f}, "
          f"{time.time() - started:.0f}s")
    torch.save(model.state_dict(), HERE / "model.pt")
    print(f"saved {HERE / 'model.pt'}")


if __name__ == "__main__":
    main()
