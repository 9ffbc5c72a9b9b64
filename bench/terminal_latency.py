"""How a person's terminal in a sandbox feels: the time from opening one to its first echo,
and the round trip of one keystroke (typed, echoed back by the program, read), per backend.

Targets: open to first echo under 2 s, keystroke round trip (median) under 5 ms and (p95)
under 20 ms: a person notices neither. The exit status is 1 when a backend misses one.

    .venv/bin/python bench/terminal_latency.py [--sandbox docker,bwrap] [--keys 200]
"""

from __future__ import annotations

import argparse
import select
import statistics
import sys
import time

from rdbench.sandbox import SandboxConfig, make_sandbox
from rdbench.sandbox.terminal import Terminal, open_terminal

OPEN_TARGET_S = 2.0
MEDIAN_TARGET_MS = 5.0
P95_TARGET_MS = 20.0
# A program that echoes every byte at once: the terminal raw and its own echo off.
ECHO = ["/bin/sh", "-c", "stty raw -echo; exec cat"]


def _until(terminal: Terminal, wanted: bytes, timeout: float = 10.0) -> None:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {wanted!r} from the terminal in {timeout:g} s")
        if select.select([terminal], [], [], 0.5)[0]:
            seen += terminal.read()


def measure(backend: str, keys: int) -> tuple[float, list[float]]:
    """(seconds from opening to the first echo, each keystroke's round trip in seconds)."""
    config = SandboxConfig(cpus=1.0, memory_mb=512, disk_mb=256,
                           labels={"rdbench.bench": "terminal-latency"})
    with make_sandbox(backend, config) as sandbox:
        started = time.perf_counter()
        terminal = open_terminal(sandbox, ECHO)
        try:
            terminal.write(b"!")
            _until(terminal, b"!")
            opened = time.perf_counter() - started
            trips = []
            for _ in range(keys):
                typed = time.perf_counter()
                terminal.write(b"k")
                _until(terminal, b"k")
                trips.append(time.perf_counter() - typed)
        finally:
            terminal.close()
    return opened, trips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox", default="docker,bwrap", help="backends, comma-separated")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed per backend")
    args = parser.parse_args()
    missed = False
    for backend in args.sandbox.split(","):
        opened, trips = measure(backend, args.keys)
        trips.sort()
        median_ms = statistics.median(trips) * 1000
        p95_ms = trips[int(len(trips) * 0.95)] * 1000
        ok = opened < OPEN_TARGET_S and median_ms < MEDIAN_TARGET_MS and p95_ms < P95_TARGET_MS
        missed |= not ok
        print(f"{backend}: open to first echo {opened * 1000:.0f} ms; keystroke round trip "
              f"median {median_ms:.2f} ms, p95 {p95_ms:.2f} ms  {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
