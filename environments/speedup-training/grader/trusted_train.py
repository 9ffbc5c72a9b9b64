"""Reference solution: the same training as the original train.py, computed quickly.

    python train.py --seed SEED --out MODEL_PT

Same data, initialization, example order and update rule as the original (so the same model
up to float32 rounding), but:
- the data come from one vectorized draw: the original draws 16 features then 1 noise value
  per example from one generator, which is exactly the rows of a (2048, 17) draw; the teacher
  is a matrix product instead of Python loops;
- each batch is one forward and one backward pass over 32 rows instead of 32 single-example
  passes, in float32 instead of float64 (the initial weights are the original's: PyTorch
  draws them in float32 before the original converts the network to float64);
- SGD with momentum and weight decay is written out in a few tensor operations on all the
  parameters at once (torch._foreach_*), with less Python per step than torch.optim.SGD;
- the per-epoch training loss, printed but never used, is computed once, at the end;
- one thread: the matrices are far too small for threads to pay.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

N_TRAIN = 2048
N_FEATURES = 16
HIDDEN = 64
TEACHER_HIDDEN = 32
NOISE = 0.1
EPOCHS = 14
BATCH = 32
LR_MAX = 0.05
LR_MIN = 0.005
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """The training inputs (2048, 16) and targets (2048,), and the generator for the orders."""
    rng = np.random.default_rng(seed)
    w_in = rng.standard_normal((N_FEATURES, TEACHER_HIDDEN)) / math.sqrt(N_FEATURES)
    w_out = rng.standard_normal(TEACHER_HIDDEN) / math.sqrt(TEACHER_HIDDEN)
    draws = rng.standard_normal((N_TRAIN, N_FEATURES + 1))
    inputs = draws[:, :N_FEATURES]
    targets = np.sin(2.0 * (inputs @ w_in)) @ w_out + NOISE * draws[:, N_FEATURES]
    return inputs, targets, rng


def initial_weights(seed: int) -> list[torch.Tensor]:
    """The original's initial weights: nn.Linear's default initialization, in order."""
    torch.manual_seed(seed)
    layers = [
        torch.nn.Linear(N_FEATURES, HIDDEN),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.Linear(HIDDEN, 1),
    ]
    return [p.detach().clone() for layer in layers for p in (layer.weight, layer.bias)]


def learning_rates(total_steps: int) -> list[float]:
    """The original's cosine schedule, one rate per step."""
    span = LR_MAX - LR_MIN
    return [
        LR_MIN + span * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
        for step in range(total_steps)
    ]


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP 16 -> 64 -> 64 -> 1 with tanh."""
    w1, b1, w2, b2, w3, b3 = params
    hidden = torch.tanh(torch.addmm(b1, x, w1.t()))
    hidden = torch.tanh(torch.addmm(b2, hidden, w2.t()))
    return torch.addmm(b3, hidden, w3.t())


def train(seed: int) -> tuple[list[torch.Tensor], float]:
    """The trained parameters for `seed` and their final training loss."""
    inputs, targets, rng = make_data(seed)
    x_all = torch.from_numpy(inputs).float()
    y_all = torch.from_numpy(targets).float().unsqueeze(1)
    params = [p.requires_grad_() for p in initial_weights(seed)]
    velocity: list[torch.Tensor] = []
    steps_per_epoch = N_TRAIN // BATCH
    rates = learning_rates(EPOCHS * steps_per_epoch)
    step = 0
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(N_TRAIN))
        x_epoch, y_epoch = x_all[order], y_all[order]
        for batch in range(steps_per_epoch):
            rows = slice(batch * BATCH, (batch + 1) * BATCH)
            loss = ((forward(params, x_epoch[rows]) - y_epoch[rows]) ** 2).sum() / BATCH
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                grads = torch._foreach_add(grads, params, alpha=WEIGHT_DECAY)
                if not velocity:
                    velocity = [g.clone() for g in grads]
                else:
                    torch._foreach_mul_(velocity, MOMENTUM)
                    torch._foreach_add_(velocity, grads)
                torch._foreach_add_(params, velocity, alpha=-rates[step])
            step += 1
    with torch.no_grad():
        final_loss = float(((forward(params, x_all) - y_all) ** 2).mean())
    return [p.detach() for p in params], final_loss


def main() -> None:
    """Command line: train for --seed, save the state_dict to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="model.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params, final_loss = train(args.seed)
    print(f"final training loss {final_loss:.5f}")
    names = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    torch.save(dict(zip(names, params, strict=True)), args.out)


if __name__ == "__main__":
    main()
