"""The reference solution's small experiments: a sweep of widths at budgets up to 1e7
parameter-steps (the largest run the rules allow), written to small_runs.json.

    python run_small.py --jobs 2        # a few minutes on 2 cores

Every run is `train.py`'s own training (imported), so each result is exactly what
`python train.py --width W --steps S --seed K` prints.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
BUDGETS = (1e5, 3e5, 1e6, 3e6, 1e7)
WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)
SEEDS = (0, 1)
MIN_STEPS = 200  # shorter runs are mostly warm-up and fit the law poorly
MAX_STEPS = 40_000  # the longest runs teach little a shorter sweep does not
MAX_COMPUTE = 1e7  # the rules: no run above 1e7 parameter-steps


def load_train() -> ModuleType:
    """The workspace's train.py, imported by path."""
    spec = importlib.util.spec_from_file_location("train", HERE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_run(width: int, steps: int, seed: int) -> dict[str, float]:
    """One training run's result."""
    train = load_train()
    loss = float(train.train(width, steps, seed))
    n = train.n_params(width)
    return {"width": width, "steps": steps, "seed": seed, "n_params": n, "compute": n * steps,
            "loss": loss}


def main() -> None:
    """Command line: run the sweep and write small_runs.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    train = load_train()
    plan = []
    for budget in BUDGETS:
        for width in WIDTHS:
            steps = int(budget // train.n_params(width))  # rounded down: never above the cap
            if MIN_STEPS <= steps <= MAX_STEPS and train.n_params(width) * steps <= MAX_COMPUTE:
                plan += [(width, steps, seed) for seed in SEEDS]
    plan.sort(key=lambda item: -item[0] * item[1])
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        widths, steps, seeds = zip(*plan, strict=True)
        runs = list(pool.map(one_run, widths, steps, seeds))
    runs.sort(key=lambda run: (run["compute"], run["width"], run["seed"]))
    (HERE / "small_runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(f"{len(runs)} runs written to small_runs.json")


if __name__ == "__main__":
    main()
