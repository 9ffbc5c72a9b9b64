"""The reference solution's small experiments: a sweep of widths at budgets up to 1e7
parameter-steps (the largest run the rules allow) on the hidden target, written to
small_runs.json.

    python run_small.py --lab ../lab       # the task author's way; tens of minutes on 2 cores

Every run goes through the `run_experiment` tool's own program (lab/run_experiment.py: the
request on stdin, one JSON line a run), in batches within its per-call cap, exactly as an agent
sends them with the tool, one batch a call. The author runs it in the sandbox image beside the
task's lab/ folder:

    docker run --rm --network none -v "$PWD/environments/scaling-law:/task" -w /task/solution \\
        rdbench-sandbox:<tag> python3 run_small.py --lab /task/lab
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGETS = (1e5, 3e5, 1e6, 3e6, 1e7)
WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192)
SEEDS = (0,)  # one seed a run: the sweep costs half, and the fit averages over widths anyway
MIN_STEPS = 200  # shorter runs are mostly warm-up and fit the law poorly
MAX_STEPS = 40_000  # the longest runs teach little a shorter sweep does not
MAX_COMPUTE = 1e7  # the rules: no run above 1e7 parameter-steps
CALL_COMPUTE, CALL_STEPS, CALL_RUNS = 3e7, 50_000, 16  # the tool's cap on one call


def n_params(width: int) -> int:
    """The parameter count of the model of width `width` (8 -> W -> W -> 1)."""
    return 9 * width + (width + 1) * width + (width + 1)


def plan() -> list[dict[str, int]]:
    """Every run of the sweep."""
    runs = []
    for budget in BUDGETS:
        for width in WIDTHS:
            steps = int(budget // n_params(width))  # rounded down: never above the cap
            if MIN_STEPS <= steps <= MAX_STEPS and n_params(width) * steps <= MAX_COMPUTE:
                runs += [{"width": width, "steps": steps, "seed": seed} for seed in SEEDS]
    return runs


def batches(runs: list[dict[str, int]]) -> list[list[dict[str, int]]]:
    """The runs in calls within the tool's cap (longest first keeps both workers busy)."""
    calls: list[list[dict[str, int]]] = []
    for run in sorted(runs, key=lambda r: -r["steps"]):
        for call in calls:
            compute = sum(n_params(r["width"]) * r["steps"] for r in call)
            steps = sum(r["steps"] for r in call)
            if (len(call) < CALL_RUNS and steps + run["steps"] <= CALL_STEPS
                    and compute + n_params(run["width"]) * run["steps"] <= CALL_COMPUTE):
                call.append(run)
                break
        else:
            calls.append([run])
    return calls


def main() -> None:
    """Command line: run the sweep through run_experiment.py and write small_runs.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, required=True, help="the task's lab/ folder")
    args = parser.parse_args()
    results = []
    calls = batches(plan())
    for number, call in enumerate(calls, start=1):
        done = subprocess.run(
            [sys.executable, "run_experiment.py"], input=json.dumps({"runs": call}),
            capture_output=True, text=True, cwd=args.lab, check=True,
        )
        results += [json.loads(line) for line in done.stdout.splitlines()]
        print(f"call {number}/{len(calls)}: {len(call)} runs", flush=True)
    runs = [{key: run[key] for key in ("width", "steps", "seed", "n_params", "compute", "loss")}
            for run in results]
    runs.sort(key=lambda run: (run["compute"], run["width"], run["seed"]))
    (HERE / "small_runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(f"{len(runs)} runs written to small_runs.json")


if __name__ == "__main__":
    main()
