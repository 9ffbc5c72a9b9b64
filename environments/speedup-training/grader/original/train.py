"""Train a small regression network on data made from a seed, and save it. Correct but slow.

    python train.py --seed SEED --out MODEL_PT

What it does (this defines the model the grader expects; see instructions.md):
1. data: a NumPy generator seeded with SEED draws a random "teacher" (two weight matrices),
   then, one example at a time, 16 input features and one noise value; the target is the
   teacher's output plus 0.1 x that noise;
2. model: torch.manual_seed(SEED), then an MLP 16 -> 64 -> 64 -> 1 with tanh, initialized
   by PyTorch's default initialization of nn.Linear (in float32), then converted to float64;
3. training: 14 epochs of SGD (momentum 0.9, weight decay 1e-4) over mini-batches of 32
   examples in an order drawn by the same NumPy generator at the start of each epoch
   (rng.permutation), minimizing the mean squared error of each batch; the learning rate
   follows a cosine from 0.05 down to 0.005 over the 896 steps;
4. output: the model's state_dict, written with torch.save to MODEL_PT.
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


def make_teacher(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's weights: a (16, 32) input matrix and a (32,) output vector."""
    w_in = rng.standard_normal((N_FEATURES, TEACHER_HIDDEN)) / math.sqrt(N_FEATURES)
    w_out = rng.standard_normal(TEACHER_HIDDEN) / math.sqrt(TEACHER_HIDDEN)
    return w_in, w_out


def teacher_output(teacher: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> float:
    """The teacher's output for one input x: sum_j w_out[j] * sin(2 * (x @ w_in)[j])."""
    w_in, w_out = teacher
    total = 0.0
    for j in range(TEACHER_HIDDEN):
        pre = 0.0
        for i in range(N_FEATURES):
            pre += float(x[i]) * float(w_in[i, j])
        total += float(w_out[j]) * math.sin(2.0 * pre)
    return total


def make_data(seed: int) -> tuple[list[np.ndarray], list[float], np.random.Generator]:
    """The training inputs and targets, and the generator (which later draws the orders)."""
    rng = np.random.default_rng(seed)
    teacher = make_teacher(rng)
    inputs, targets = [], []
    for _ in range(N_TRAIN):
        x = rng.standard_normal(N_FEATURES)
        y = teacher_output(teacher, x) + NOISE * rng.standard_normal()
        inputs.append(x)
        targets.append(y)
    return inputs, targets, rng


def make_model(seed: int) -> torch.nn.Sequential:
    """The network, freshly initialized from `seed` (its state_dict keys: 0.*, 2.*, 4.*)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(N_FEATURES, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 1),
    )
    return model.double()


def learning_rate(step: int, total_steps: int) -> float:
    """Cosine from LR_MAX (step 0) towards LR_MIN (step total_steps)."""
    return LR_MIN + (LR_MAX - LR_MIN) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def train(seed: int) -> torch.nn.Sequential:
    """Train the network for `seed`, printing the training loss after every epoch."""
    inputs, targets, rng = make_data(seed)
    model = make_model(seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LR_MAX, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    steps_per_epoch = N_TRAIN // BATCH
    total_steps = EPOCHS * steps_per_epoch
    step = 0
    for epoch in range(EPOCHS):
        order = rng.permutation(N_TRAIN)
        for batch in range(steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps)
            optimizer.zero_grad()
            # accumulate the batch's gradient one example at a time
            for index in order[batch * BATCH : (batch + 1) * BATCH]:
                x = torch.tensor(inputs[index], dtype=torch.float64).unsqueeze(0)
                y = torch.tensor([[targets[index]]], dtype=torch.float64)
                loss = ((model(x) - y) ** 2).sum() / BATCH
                loss.backward()
            optimizer.step()
            step += 1
        with torch.no_grad():
            total = 0.0
            for index in range(N_TRAIN):
                x = torch.tensor(inputs[index], dtype=torch.float64).unsqueeze(0)
                total += float(((model(x) - targets[index]) ** 2).sum())
        print(f"epoch {epoch + 1}/{EPOCHS}: training loss {total / N_TRAIN:.5f}", flush=True)
    return model


def main() -> None:
    """Command line: train for --seed, save the state_dict to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="model.pt")
    args = parser.parse_args()
    model = train(args.seed)
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
