"""Measure the ground truth of the scaling-law task: the held-out loss of every grid width
trained at each budget, with several seeds. The task author runs this once, offline (tens of
minutes on 2 cores; not in tests), in the sandbox image:

    docker run --rm --network none -v "$PWD/environments/scaling-law:/task" -w /task \\
        rdbench-sandbox:<tag> python3 grader/measure_ground_truth.py --jobs 2

It trains on the hidden target (lab/hidden_target.py) with the workspace's train.py (the
recipe; task.toml's [lab] from_workspace gives the `run_experiment` tool the same file) and writes
grader/ground_truth.json (validation and test budgets; hidden) and workspace/example/ (the
public example budget, one seed). ground_truth.json records the SHA-256 of train.py and of the
hidden target, so a test notices when either changed and the ground truth is stale.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType

TASK = Path(__file__).resolve().parents[1]
TRAIN_PY = TASK / "workspace" / "train.py"  # the lab runs it too: [lab] from_workspace
HIDDEN_TARGET = TASK / "lab" / "hidden_target.py"
GROUND_TRUTH = TASK / "grader" / "ground_truth.json"
EXAMPLE = TASK / "workspace" / "example" / "budget_1e6.json"
GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256)
BUDGETS = {"example": 1e6, "validation": 1e7, "test": 1e8}
SEEDS = {"example": (0,), "validation": (0, 1, 2), "test": (0, 1, 2)}


def load_train() -> ModuleType:
    """The lab's train.py, imported by path."""
    return _load(TRAIN_PY, "scaling_law_train")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_run(width: int, steps: int, seed: int) -> float:
    """The held-out loss of one training run (in a worker process)."""
    target = _load(HIDDEN_TARGET, "scaling_law_hidden_target").make_target()
    return float(load_train().train(width, steps, seed, target))


def measure(budget: float, seeds: tuple[int, ...], jobs: int) -> dict[str, object]:
    """Every grid width trained for round(budget / N) steps with each seed."""
    train = load_train()
    plan = [(w, round(budget / train.n_params(w)), s) for w in GRID for s in seeds]
    plan.sort(key=lambda item: -item[1])  # longest runs first keeps the workers busy
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        widths, steps, seeds_ = zip(*plan, strict=True)
        losses = dict(zip(plan, pool.map(one_run, widths, steps, seeds_), strict=True))
    runs = {}
    for width in GRID:
        steps = round(budget / train.n_params(width))
        values = [losses[(width, steps, seed)] for seed in seeds]
        runs[str(width)] = {
            "n_params": train.n_params(width),
            "steps": steps,
            "losses": values,
            "loss": statistics.fmean(values),
        }
    best = min(runs, key=lambda width: runs[width]["loss"])
    return {
        "compute": budget,
        "seeds": list(seeds),
        "runs": runs,
        "best_width": int(best),
        "best_loss": runs[best]["loss"],
    }


def main() -> None:
    """Command line: measure the budgets asked for and write the files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=sorted(BUDGETS), nargs="*", default=sorted(BUDGETS))
    args = parser.parse_args()
    truth = json.loads(GROUND_TRUTH.read_text()) if GROUND_TRUTH.exists() else {"budgets": {}}
    for name in args.only:
        started = time.perf_counter()
        result = measure(BUDGETS[name], SEEDS[name], args.jobs)
        print(f"{name}: best width {result['best_width']}, loss {result['best_loss']:.5f} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        if name == "example":
            EXAMPLE.parent.mkdir(exist_ok=True)
            EXAMPLE.write_text(json.dumps(result, indent=1) + "\n")
            continue
        truth["budgets"][name] = result
        # written after each budget: a long measurement stopped half-way keeps what it did
        truth["train_py_sha256"] = hashlib.sha256(TRAIN_PY.read_bytes()).hexdigest()
        truth["hidden_target_sha256"] = hashlib.sha256(HIDDEN_TARGET.read_bytes()).hexdigest()
        GROUND_TRUTH.write_text(json.dumps(truth, indent=1) + "\n")


if __name__ == "__main__":
    main()
