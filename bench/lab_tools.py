"""What a lab tool call costs, per backend, on the lab fixture task (tests/fixtures/lab-task).

For each backend it measures, in one episode:
- first: the first `lookup` call (starts the lab sandbox, copies grader/ and lab/ in, runs);
- call: the median of later `lookup` calls (the lab sandbox is running);
- python: the median of `python` tool calls (python3 with its code on stdin, as a lab command
  gets its input) in the agent's sandbox, measured alternately with `call`, so a busy spell
  slows both alike.

    .venv/bin/python bench/lab_tools.py [--backends docker,bwrap] [--calls 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from rdbench.env import RDEnv
from rdbench.task import load_task

LAB_TASK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lab-task"


def _timed(env: RDEnv, action: dict[str, Any]) -> float:
    started = time.perf_counter()
    _, _, _, _, info = env.step(action)
    if "error" in info:
        raise RuntimeError(f"{action['tool']} failed: {info['error']}")
    return time.perf_counter() - started


def measure(backend: str, calls: int) -> dict[str, float]:
    """Seconds: the first lab call, the median later lab call, the median python call."""
    env = RDEnv(load_task(LAB_TASK), sandbox=backend, budget={"steps": 2 * calls + 5})
    lookup = {"tool": "lookup", "input": {"key": "bench"}}
    python = {"tool": "python", "input": {"code": "import json, os; print(os.getcwd())"}}
    try:
        env.reset()
        first = _timed(env, lookup)
        lab, shell = [], []
        for _ in range(calls):
            lab.append(_timed(env, lookup))
            shell.append(_timed(env, python))
    finally:
        env.close()
    return {"first": first, "call": statistics.median(lab), "python": statistics.median(shell)}


def main() -> None:
    """Command line: measure each backend and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        result = measure(backend, args.calls)
        print(f"{backend}: first lab call {result['first']:.3f} s, later lab calls "
              f"{result['call']:.3f} s (median), a python tool call {result['python']:.3f} s "
              f"(median): {result['call'] - result['python']:+.3f} s a call")


if __name__ == "__main__":
    main()
