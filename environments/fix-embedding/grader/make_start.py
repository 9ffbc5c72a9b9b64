"""Make the starting workspace's model.pt: train WindowMLP well on a large private corpus of the
chain, then corrupt its token embedding. Run once by the task's author (10-20 minutes on
2 cores), not at grading time:

    python make_start.py --out ../workspace/model.pt [--keep-original original.pt]
    python make_start.py --out ../workspace/model.pt --original original.pt   # corrupt only

The corruption: the rows of `embed.weight` are shuffled, each row is multiplied by its own
factor between 1/16 and 1/2 (log-uniform), and Gaussian noise of 2% of the typical row size
(times the row's factor) is added. Everything else in the state_dict is left as trained.
The factors shrink the rows, so the corrupted model makes vague rather than confidently wrong
predictions: its loss is already close to that of a model that ignores its input, and
rescaling the whole matrix earns next to nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import make_chain, sample
from model import WindowMLP, windows

TRAIN_SEED = 0
CORRUPT_SEED = 2
EPOCHS = 3
BATCH = 1024
LEARNING_RATE = 3e-3
NOISE = 0.02
SMALLEST, LARGEST = 1 / 16, 1 / 2  # range of the row factors


def train_original() -> WindowMLP:
    """WindowMLP trained with Adam and a one-cycle schedule on the private 'train' split."""
    torch.manual_seed(TRAIN_SEED)
    context, target = windows(torch.from_numpy(sample(make_chain(), "train")))
    model = WindowMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps_per_epoch = len(target) // BATCH
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch
    )
    for epoch in range(EPOCHS):
        order = torch.randperm(len(target))
        for step in range(steps_per_epoch):
            batch = order[step * BATCH : (step + 1) * BATCH]
            loss = torch.nn.functional.cross_entropy(model(context[batch]), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch}: last batch loss {loss.item():.4f}", flush=True)
    return model


def corrupt(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of `state` whose embedding rows are shuffled, rescaled and perturbed."""
    generator = torch.Generator().manual_seed(CORRUPT_SEED)
    weight = state["embed.weight"]
    rows, dim = weight.shape
    permutation = torch.randperm(rows, generator=generator)
    low, high = math.log(SMALLEST), math.log(LARGEST)
    factor = torch.exp(low + torch.rand(rows, 1, generator=generator) * (high - low))
    size = float(weight.norm(dim=1).mean()) * dim**-0.5
    noise = torch.randn(weight.shape, generator=generator) * NOISE * size
    corrupted = dict(state)
    corrupted["embed.weight"] = ((weight[permutation] + noise) * factor).contiguous()
    return corrupted


def main() -> None:
    """Command line: train, corrupt, save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--keep-original", metavar="PATH", help="save the trained model too")
    parser.add_argument("--original", metavar="PATH", help="corrupt this model, do not train")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.original:
        state = torch.load(args.original, map_location="cpu", weights_only=True)
    else:
        model = train_original()
        state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    if args.keep_original:
        torch.save(state, args.keep_original)
    torch.save(corrupt(state), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
