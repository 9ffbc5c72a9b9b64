"""Train the model of model.py on data/corpus.npy and save its weights to model.pt.

    python train.py [--epochs 2] [--lr 0.1] [--batch 64]

The last 512 sequences of the corpus are held out: the script prints their cross-entropy
(nats/token, positions 8..127 as the grader scores them) and how far it is above the entropy
rate of the corpus. Only the model's forward pass is restricted: this script may use anything
(the loss below uses log-softmax).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import build_model

HERE = Path(__file__).resolve().parent
ENTROPY_RATE = 1.0729  # nats/token: the floor of the cross-entropy (see instructions.md)
HOLDOUT = 512
WARMUP = 8


def scored_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting tokens[:, t + 1] at positions t >= WARMUP - 1."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, WARMUP - 1 : -1].reshape(-1, vocab),
                           tokens[:, WARMUP:].reshape(-1))


def evaluate(model: torch.nn.Module, tokens: torch.Tensor) -> float:
    """The held-out cross-entropy, in nats per token."""
    model.eval()
    with torch.no_grad():
        losses = [scored_loss(model(tokens[i : i + 256]), tokens[i : i + 256]).item()
                  for i in range(0, len(tokens), 256)]
    model.train()
    return float(np.mean(losses))


def main() -> None:
    """Train, report the held-out loss, save model.pt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    corpus = torch.from_numpy(np.load(HERE / "data" / "corpus.npy").astype(np.int64))
    train, held_out = corpus[:-HOLDOUT], corpus[-HOLDOUT:]
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    started = time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train))
        for i in range(0, len(train), args.batch):
            batch = train[order[i : i + args.batch]]
            loss = scored_loss(model(batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        held = evaluate(model, held_out)
        print(f"epoch {epoch + 1}: held-out cross-entropy {held:.4f}, "
              f"log(loss - floor) {math.log(max(held - ENTROPY_RATE, 1e-6)):.3f}, "
              f"{time.time() - started:.0f}s", flush=True)
    torch.save(model.state_dict(), HERE / "model.pt")
    print(f"saved {HERE / 'model.pt'}")


if __name__ == "__main__":
    main()
