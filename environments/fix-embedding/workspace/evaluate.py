"""Evaluate a state_dict of WindowMLP on the held-out end of the public corpus.

    python evaluate.py [model.pt]

Prints the cross-entropy (nats/token) on the last HOLDOUT sequences of data/corpus.npy and
log(loss - floor), the score the grader computes (on its own, larger, hidden corpus).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import WindowMLP, windows

HERE = Path(__file__).resolve().parent
ENTROPY_RATE = 1.2725  # nats/token: the floor of the cross-entropy (see instructions.md)
HOLDOUT = 8  # sequences at the end of the corpus that train.py never trains on


def held_out_loss(model: WindowMLP) -> float:
    """Mean next-token cross-entropy on the held-out sequences of the public corpus."""
    corpus = torch.from_numpy(np.load(HERE / "data" / "corpus.npy"))
    context, target = windows(corpus[-HOLDOUT:])
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(context), target).item()


def main() -> None:
    """Load the state_dict named on the command line (default model.pt) and evaluate it."""
    path = sys.argv[1] if len(sys.argv) > 1 else str(HERE / "model.pt")
    model = WindowMLP()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    loss = held_out_loss(model)
    excess = loss - ENTROPY_RATE
    score = f"{math.log(excess):.3f}" if excess > 0 else "undefined (noise: loss below floor)"
    print(f"{path}: held-out cross-entropy {loss:.4f} nats/token, loss - floor {excess:+.4f}, "
          f"log(loss - floor) {score}")


if __name__ == "__main__":
    main()
