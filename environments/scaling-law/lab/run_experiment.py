"""The `run_experiment` tool: train runs of train.py's recipe on the hidden target.

Runs in the episode's lab sandbox (never the agent's), with the tool's input on stdin:

    {"runs": [{"width": 32, "steps": 7262, "seed": 0}, ...]}

Every run must stay within the experiment limit, N(width) x steps <= 1e7 parameter-steps, and
one call within a work cap (at most 3e7 parameter-steps and 50,000 steps in all, about a
minute on 2 idle cores); a call that breaks either is refused whole, nothing trained, with a
message saying what to change. Runs train with one thread each, two at a time, and print one
JSON line each, in the order asked, the same fields as `train.py --json`.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train  # noqa: E402  (the lab's copy of the workspace's train.py)
from hidden_target import make_target  # noqa: E402

MAX_RUN_COMPUTE = 1e7  # parameter-steps of one run: the task's rule
MAX_CALL_COMPUTE = 3e7  # parameter-steps of one call
MAX_CALL_STEPS = 50_000  # steps of one call (small widths cost per step, not per parameter)
MAX_WIDTH = 512
JOBS = 2


class Refused(ValueError):
    """The request breaks a limit; the message says which and what to change."""


def check(runs: list[dict[str, int]]) -> None:
    """Refused unless every run and the call as a whole are within the limits."""
    total_compute = total_steps = 0
    for number, run in enumerate(runs, start=1):
        width, steps = run["width"], run["steps"]
        if not 1 <= width <= MAX_WIDTH:
            raise Refused(f"run {number}: width must be between 1 and {MAX_WIDTH}, got {width}")
        compute = train.n_params(width) * steps
        if compute > MAX_RUN_COMPUTE:
            raise Refused(
                f"run {number}: width {width} (N = {train.n_params(width)}) x {steps} steps is "
                f"{compute:.4g} parameter-steps, above the limit of {MAX_RUN_COMPUTE:.0e} per "
                f"run; at most {int(MAX_RUN_COMPUTE // train.n_params(width))} steps at this "
                "width. Nothing was run."
            )
        total_compute += compute
        total_steps += steps
    if total_compute > MAX_CALL_COMPUTE or total_steps > MAX_CALL_STEPS:
        raise Refused(
            f"these {len(runs)} runs are {total_compute:.4g} parameter-steps and {total_steps} "
            f"steps in all; one call may do at most {MAX_CALL_COMPUTE:.0e} parameter-steps and "
            f"{MAX_CALL_STEPS} steps. Split them over several calls. Nothing was run."
        )


def one_run(width: int, steps: int, seed: int) -> dict[str, Any]:
    """One training run on the hidden target (in a worker process), as train.py reports it."""
    started = time.perf_counter()
    loss = train.train(width, steps, seed, make_target())
    n = train.n_params(width)
    return {"width": width, "steps": steps, "seed": seed, "n_params": n, "compute": n * steps,
            "loss": loss, "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    """Read the request on stdin, refuse it or train it, print one JSON line a run."""
    runs = json.load(sys.stdin)["runs"]
    try:
        check(runs)
    except Refused as error:
        print(f"Refused: {error}", file=sys.stderr)
        sys.exit(2)
    with ProcessPoolExecutor(max_workers=min(JOBS, len(runs))) as pool:
        futures = [pool.submit(one_run, r["width"], r["steps"], r["seed"]) for r in runs]
        for future in futures:
            print(json.dumps(future.result()), flush=True)


if __name__ == "__main__":
    main()
