"""Check kernel.py: right answers on the example inputs and on fresh random ones, and its speed.

    python check.py              # correctness on every size, then timings against baseline.py
    python check.py --no-timing  # correctness only

This is a convenience for you: the grader does not run it. It measures the CPU time of this
process (all its threads) in-process; the grader measures each call in a separate process,
from outside, and counts the CPU time of every process the call starts too, so expect
somewhat different numbers.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import baseline
import kernel
import numpy as np
from inputs import SIZES, make_case

DATA = Path(__file__).resolve().parent / "data"
CASE_KEYS = ("a", "a_len", "b", "b_len")


def check_size(size: str, seed: int) -> bool:
    """Compare kernel.py with the example's expected output and with baseline.py on a fresh
    input; print and return whether both agree."""
    with np.load(DATA / f"example-{size}.npz", allow_pickle=False) as data:
        example = {key: data[key] for key in CASE_KEYS}
        expected = data["expected"]
    fresh = make_case(np.random.default_rng([seed, len(size)]), size)
    ok = True
    for name, case, want in (
        ("example", example, expected),
        ("random", fresh, baseline.edit_distance(**fresh)),
    ):
        got = np.asarray(kernel.edit_distance(**case))
        if got.shape != want.shape or got.dtype.kind not in "iu":
            print(f"  {size}/{name}: FAIL, shape {got.shape} dtype {got.dtype}")
            ok = False
        elif not np.array_equal(got, want):
            wrong = np.flatnonzero(got != want)
            print(f"  {size}/{name}: FAIL, {len(wrong)} wrong, e.g. pair {wrong[0]}")
            ok = False
        else:
            print(f"  {size}/{name}: ok")
    return ok


def best_time(function: object, case: dict[str, np.ndarray], repeats: int) -> float:
    """The median CPU time (this process, all its threads) of `repeats` calls of `function`
    on `case`."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function(**case)  # type: ignore[operator]
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    """Run the checks and, unless told not to, the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("correctness:")
    ok = all([check_size(size, args.seed) for size in SIZES])
    if not ok:
        raise SystemExit("kernel.py gives wrong answers: the grader would mark it invalid")
    if args.no_timing:
        return
    print("timing (median CPU time of in-process calls):")
    logs = []
    for size in SIZES:
        case = make_case(np.random.default_rng([args.seed, 99, len(size)]), size)
        slow = best_time(baseline.edit_distance, case, args.repeats)
        fast = best_time(kernel.edit_distance, case, args.repeats)
        logs.append(math.log(slow / fast))
        print(f"  {size}: baseline {slow:.3f}s, kernel.py {fast:.4f}s, speed-up {slow / fast:.1f}x")
    print(f"mean ln speed-up (the grader's raw score, roughly): {sum(logs) / len(logs):.3f}")


if __name__ == "__main__":
    main()
