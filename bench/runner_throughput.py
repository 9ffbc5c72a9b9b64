"""How many episodes a minute the runner gets through, and what each live episode costs the
host in memory.

The null agent (it submits at once) on a copy of the toy task asking for 0.25 CPUs and
256 MiB, so that 8 episodes fit a 2-core machine: each episode is then mostly what the runner
adds (a sandbox started, the workspace laid out and archived, a fresh grading sandbox, the
records written). For each backend and each parallelism it runs `max(4, 2 x P)` episodes
through the local executor and prints episodes per minute, the ratio to parallelism 1 measured
in the same run, and the host memory in use per live episode (MemTotal - MemAvailable above
the mean of the levels before and after the run: its median over samples taken every 0.2 s
while episodes were live, divided by the mean number live). Other work on the machine moves
that figure by tens of MiB: read it at the higher parallelisms, where the signal is large.

    .venv/bin/python bench/runner_throughput.py [--backends docker,bwrap] [--parallel 1,2,4,8]
    .venv/bin/python bench/runner_throughput.py --quick     # a smoke test: P 1 and 2
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import structlog

from rdbench.executors import LocalExecutor
from rdbench.records import EpisodeResult
from rdbench.run_observer import NullObserver
from rdbench.sandbox import backend_problem
from rdbench.suite import AgentChoice, RunConfig, expand

TOY_TASK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toy-task"
SAMPLE_S = 0.2


def bench_task(folder: Path) -> Path:
    """A copy of the toy task named toy-bench, asking for 0.25 CPUs and 256 MiB."""
    target = folder / "toy-bench"
    shutil.copytree(TOY_TASK, target)
    toml = target / "task.toml"
    text = toml.read_text(encoding="utf-8").replace('id = "toy-task"', 'id = "toy-bench"')
    text = re.sub(r"(?m)^cpus = .*$", "cpus = 0.25", text)
    text = re.sub(r"(?m)^memory_mb = .*$", "memory_mb = 256", text)
    toml.write_text(text, encoding="utf-8")
    return target


def used_mb() -> float:
    """Host memory in use: MemTotal - MemAvailable, in MiB."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return (fields["MemTotal"] - fields["MemAvailable"]) / 1024


class LiveCounter(NullObserver):
    """Counts the episodes live at each moment."""

    def __init__(self) -> None:
        self.live = 0
        self._lock = threading.Lock()

    def episode_started(self, episode_id: str, task_id: str, agent: str, seed: int) -> None:
        """One more live episode."""
        with self._lock:
            self.live += 1

    def episode_finished(self, result: EpisodeResult, skipped: bool) -> None:
        """One fewer (a skipped one was never live)."""
        if not skipped:
            with self._lock:
                self.live -= 1


def measure(task: Path, backend: str, parallel: int, episodes: int, scratch: Path
            ) -> tuple[float, float | None]:  # fmt: skip
    """Episodes per minute and MiB per live episode of one level."""
    config = RunConfig(tasks=[str(task)], agents=[AgentChoice(name="null")], runs=episodes,
                       sandbox=backend, parallel=parallel)
    specs = expand(config, f"throughput-{backend}-{parallel}")
    counter = LiveCounter()
    before = used_mb()
    samples: list[tuple[float, int]] = []  # (MiB in use, episodes live)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            live = counter.live
            if live > 0:
                samples.append((used_mb(), live))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    report = LocalExecutor(parallel=parallel).run(specs, scratch / f"{backend}-{parallel}",
                                                  counter)
    took = time.perf_counter() - started
    done.set()
    sampler.join()
    time.sleep(1.0)  # let the last sandbox's memory go back
    baseline = (before + used_mb()) / 2
    memory = None
    if samples:
        in_use = statistics.median(used for used, _ in samples) - baseline
        memory = in_use / statistics.mean(live for _, live in samples)
    failed = [r.episode_id for r in report.results if r.normalized_score != 0.0]
    if failed:
        raise RuntimeError(f"episodes did not end as the null agent's should: {failed}")
    return episodes / took * 60, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--parallel", default="1,2,4,8")
    parser.add_argument("--quick", action="store_true", help="P 1 and 2, 2 episodes each")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    levels = [1, 2] if args.quick else [int(p) for p in args.parallel.split(",")]
    print(f"{'backend':8} {'P':>3} {'episodes':>8} {'ep/min':>8} {'x P=1':>6} "
          f"{'MiB/live ep':>11}")
    with tempfile.TemporaryDirectory(prefix="rdbench-throughput-") as folder:
        scratch = Path(folder)
        task = bench_task(scratch)
        for backend in args.backends.split(","):
            problem = backend_problem(backend)
            if problem is not None:
                print(f"{backend:8} skipped: {problem}")
                continue
            first: float | None = None
            for parallel in levels:
                episodes = 2 if args.quick else max(4, 2 * parallel)
                rate, memory = measure(task, backend, parallel, episodes, scratch)
                first = first or rate
                shown = "-" if memory is None else f"{memory:.0f}"
                print(f"{backend:8} {parallel:>3} {episodes:>8} {rate:>8.1f} "
                      f"{rate / first:>6.2f} {shown:>11}", flush=True)


if __name__ == "__main__":
    main()
