"""Evaluate policy.json on the public seeds, the way the grader does on its hidden ones.

    python evaluate.py              # mean return over the 10 public seeds
    python evaluate.py --seeds 50   # over seeds 0..49

It checks policy.json and plays it with network.py, the grader's own code for both (the
grader has its own copy and its own seeds, so editing either file here changes nothing there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from network import NetworkError, load_network, play

POLICY = Path(__file__).resolve().parent / "policy.json"


def main() -> None:
    """Check the policy, play the episodes, print the returns and their mean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--policy", type=Path, default=POLICY, help="the network file to play")
    args = parser.parse_args()
    try:
        network = load_network(args.policy)
    except NetworkError as error:
        raise SystemExit(f"the grader would reject it: {error}") from None
    start = time.perf_counter()
    returns = play(network, list(range(args.seeds)))
    print("returns:", " ".join(f"{r:.0f}" for r in returns))
    print(f"mean return over {len(returns)} seeds: {np.mean(returns):.2f} "
          f"({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
