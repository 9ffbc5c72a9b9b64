"""Train one model of the family on the generated task and report its held-out loss.

    python train.py --width W --steps S --target FILE.py [--seed K] [--json]

The task: regress y = f(x) + noise, x ~ N(0, I_8), where f is a fixed smooth target function
with Var f(x) = 1 and the noise has standard deviation 0.1 (so no model can get below a loss of
0.01). Every step draws a fresh batch of 32 examples: there is no fixed training set and no
overfitting, only a number of steps.

The graded target is hidden and is not in this file: train on it with the `run_experiment`
tool, which runs this same code outside your sandbox. Here you supply a target yourself, a
Python file defining `target(x)`: a batch of inputs (n, 8) -> (n,) float32 outputs (to test
the code, time it, or study the recipe on functions of your own).

The model family: an MLP 8 -> W -> W -> 1 with GELU activations. Its parameter count
N(W) = W^2 + 11 W + 1 (weights and biases) is printed; compute is counted as
C = N(W) x steps "parameter-steps" (6 N D FLOPs with D = 32 x steps examples is 192 C).

The training recipe is fixed: Adam (lr 3e-3, betas 0.9/0.999), linear warm-up over the first
5% of the steps, then a cosine decay to 0; one thread. The loss reported is the mean squared
error on 4,096 held-out examples, the same for every run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

D_IN = 8
NOISE = 0.1
BATCH = 32
LR = 3e-3
WARMUP = 0.05
N_HELD_OUT = 4096
HELD_OUT_SEED = 20250102
CHUNK = 256  # batches drawn at once (the same examples as drawing them one batch at a time)


def n_params(width: int) -> int:
    """The parameter count of the model of width `width`."""
    return (D_IN + 1) * width + (width + 1) * width + (width + 1)


Target = Callable[[torch.Tensor], torch.Tensor]


def examples(teacher: Target, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n fresh examples (x, y) drawn from `gen`."""
    x = torch.randn(n, D_IN, generator=gen)
    noise = torch.randn(n, generator=gen)
    return x, teacher(x) + NOISE * noise


def make_model(width: int) -> torch.nn.Sequential:
    """The MLP 8 -> width -> width -> 1 with GELU (PyTorch's default initialization)."""
    return torch.nn.Sequential(
        torch.nn.Linear(D_IN, width),
        torch.nn.GELU(),
        torch.nn.Linear(width, width),
        torch.nn.GELU(),
        torch.nn.Linear(width, 1),
    )


def learning_rate(step: int, steps: int) -> float:
    """Linear warm-up over the first 5% of the steps, then cosine decay to 0."""
    warmup = max(1, round(WARMUP * steps))
    if step < warmup:
        return LR * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return LR * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(width: int, steps: int, seed: int, teacher: Target) -> float:
    """Train the model of width `width` for `steps` steps on the target function `teacher`;
    its held-out loss."""
    torch.set_num_threads(1)
    held_out = examples(teacher, N_HELD_OUT, torch.Generator().manual_seed(HELD_OUT_SEED))
    torch.manual_seed(seed)
    model = make_model(width)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)
    data = torch.Generator().manual_seed(1_000_003 + seed)
    for first in range(0, steps, CHUNK):
        count = min(CHUNK, steps - first)
        xs, ys = examples(teacher, count * BATCH, data)
        for i in range(count):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(first + i, steps)
            rows = slice(i * BATCH, (i + 1) * BATCH)
            loss = ((model(xs[rows]).squeeze(1) - ys[rows]) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float(((model(held_out[0]).squeeze(1) - held_out[1]) ** 2).mean())


def load_target(path: Path) -> Target:
    """The function `target` defined in the Python file `path`."""
    namespace: dict[str, object] = {"__name__": "target_file", "__file__": str(path)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    target = namespace.get("target")
    if not callable(target):
        raise SystemExit(f"{path} defines no function target(x)")
    return target  # type: ignore[return-value]


def main() -> None:
    """Command line: train one (width, steps) and print the held-out loss."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--target", type=Path, required=True,
                        help="a Python file defining target(x): (n, 8) -> (n,)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.width < 1 or args.steps < 1:
        parser.error("--width and --steps must be positive")
    started = time.perf_counter()
    loss = train(args.width, args.steps, args.seed, load_target(args.target))
    n = n_params(args.width)
    result = {
        "width": args.width,
        "steps": args.steps,
        "seed": args.seed,
        "n_params": n,
        "compute": n * args.steps,
        "loss": loss,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"width {args.width} (N = {n} parameters), {args.steps} steps, "
            f"C = {n * args.steps:.3g} parameter-steps: held-out loss {loss:.5f} "
            f"({result['seconds']}s)"
        )


if __name__ == "__main__":
    main()
