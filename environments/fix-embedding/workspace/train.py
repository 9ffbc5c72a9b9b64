"""Train WindowMLP on the public corpus (data/corpus.npy), from scratch or from a checkpoint.

    python train.py [--init model.pt] [--epochs 20] [--lr 0.003] [--out trained.pt]

This is how the model was first trained (on a much larger corpus of the same process). The
last sequences of the corpus are held out (see evaluate.py); after every epoch their
cross-entropy is printed. The result goes to --out (not model.pt, unless you say so).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from evaluate import HOLDOUT, held_out_loss
from model import WindowMLP, windows

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Train and save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", help="a state_dict to start from (default: random weights)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(HERE / "trained.pt"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = WindowMLP()
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    corpus = torch.from_numpy(np.load(HERE / "data" / "corpus.npy"))
    context, target = windows(corpus[:-HOLDOUT])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"start: held-out cross-entropy {held_out_loss(model):.4f}")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(target))
        for i in range(0, len(target), args.batch):
            batch = order[i : i + args.batch]
            loss = F.cross_entropy(model(context[batch]), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: held-out cross-entropy {held_out_loss(model):.4f}", flush=True)
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
