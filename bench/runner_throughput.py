"""How many episodes a minute the runner gets through, and what each live episode costs the
host in memory.

The null agent (it submits at once) on a copy of the toy task asking for 0.25 CPUs and
256 MiB, so that 8 episodes fit a 2-core machine: each episode is then mostly what the runner
adds (a sandbox started, the workspace laid out and archived, a fresh grading sandbox, the
records written). For each backend and each parallelism it runs `max(4, 2 x P)` episodes
through the local executor and prints episodes per minute and the ratio to parallelism 1
measured in the same run. Then it keeps as many episodes live at once as the highest
parallelism (an agent that sleeps in its sandbox for a few seconds) and prints the host memory
each live episode holds: what its sandbox's cgroup is charged (processes, page cache, kernel
memory) plus the resident memory of the host processes serving it (bwrap and nsenter, or
Docker's shim), the median of samples every 0.2 s. Memory of the cgroup v1 hierarchy
(/sys/fs/cgroup/memory) is read.

    .venv/bin/python bench/runner_throughput.py [--backends docker,bwrap] [--parallel 1,2,4,8]
    .venv/bin/python bench/runner_throughput.py --quick     # a smoke test: P 1 and 2
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from rdbench.agents.base import TaskInfo, Usage, agent
from rdbench.executors import LocalExecutor
from rdbench.records import EpisodeResult
from rdbench.run_observer import NullObserver
from rdbench.sandbox import backend_problem
from rdbench.suite import AgentChoice, RunConfig, expand

TOY_TASK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "toy-task"
SAMPLE_S = 0.2
NAPPER = "throughput-napper"
NAP_S = 6


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


@agent(NAPPER)
class Napper:
    """Sleeps NAP_S in its sandbox (one command), then submits: a live, idle episode."""

    name = NAPPER

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Not napped yet."""
        self.napped = False

    def act(self, observation: str) -> dict[str, Any]:
        """Sleep once, then submit."""
        if self.napped:
            return {"tool": "submit", "input": {}}
        self.napped = True
        return {"tool": "bash", "input": {"command": f"sleep {NAP_S}"}}

    def usage(self) -> Usage:
        """No model."""
        return Usage()


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


def measure(task: Path, backend: str, parallel: int, episodes: int, scratch: Path) -> float:
    """Episodes per minute of the null agent at one parallelism."""
    config = RunConfig(tasks=[str(task)], agents=[AgentChoice(name="null")], runs=episodes,
                       sandbox=backend, parallel=parallel)
    specs = expand(config, f"throughput-{backend}-{parallel}")
    started = time.perf_counter()
    report = LocalExecutor(parallel=parallel).run(specs, scratch / f"{backend}-{parallel}")
    took = time.perf_counter() - started
    failed = [r.episode_id for r in report.results if r.normalized_score != 0.0]
    if failed:
        raise RuntimeError(f"episodes did not end as the null agent's should: {failed}")
    return episodes / took * 60


def memory_per_episode(task: Path, backend: str, live: int, scratch: Path) -> float:
    """MiB of host memory per live episode: `live` episodes of an agent that sleeps in its
    sandbox for NAP_S, sampled (median) while all of them are live: the memory their
    sandboxes' cgroups charge (processes, page cache, kernel memory) plus the resident memory
    of the host processes that serve them (this process's children: bwrap, nsenter; Docker's
    per-container shims)."""
    run_id = f"throughput-memory-{backend}"
    config = RunConfig(tasks=[str(task)], agents=[AgentChoice(name=NAPPER)], runs=live,
                       sandbox=backend, parallel=live)
    specs = expand(config, run_id)
    counter = LiveCounter()
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            if counter.live == live:
                held = served_mb(backend, run_id)
                if held is not None:
                    samples.append(held)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    LocalExecutor(parallel=live).run(specs, scratch / f"{backend}-memory", counter)
    done.set()
    sampler.join()
    if not samples:
        raise RuntimeError(f"the {live} episodes were never live at once")
    return statistics.median(samples) / live


def served_mb(backend: str, run_id: str) -> float | None:
    """MiB held now by this process's sandboxes and the host processes serving them (None
    when a container went away while being read)."""
    groups: list[Path] = []
    helpers = set(_descendants(os.getpid()))
    if backend == "bwrap":
        groups = list(CGROUP_MEMORY.glob(f"rdbench/{os.getpid()}-*"))
    else:
        import docker
        import docker.errors

        client = docker.from_env()
        try:
            for container in client.containers.list(filters={"label": f"rdbench.run={run_id}"}):
                pid = container.attrs["State"]["Pid"]
                groups.append(_memory_group(pid))
                helpers.add(_parent(pid))  # the container's shim
        except docker.errors.NotFound:
            return None
        finally:
            client.close()
    charged = sum(int((group / "memory.usage_in_bytes").read_text()) for group in groups
                  if (group / "memory.usage_in_bytes").is_file())
    inside = {str(group) for group in groups}
    resident = sum(_rss(pid) for pid in helpers if str(_memory_group(pid)) not in inside)
    return (charged + resident) / 2**20


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            children.setdefault(_parent(int(entry.name)), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _memory_group(pid: int) -> Path:
    try:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return CGROUP_MEMORY / path.lstrip("/")
    except OSError:
        pass
    return CGROUP_MEMORY


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="docker,bwrap")
    parser.add_argument("--parallel", default="1,2,4,8")
    parser.add_argument("--quick", action="store_true", help="P 1 and 2, 2 episodes each")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    levels = [1, 2] if args.quick else [int(p) for p in args.parallel.split(",")]
    live = 2 if args.quick else max(levels)
    print(f"{'backend':8} {'P':>3} {'episodes':>8} {'ep/min':>8} {'x P=1':>6}", flush=True)
    memory: dict[str, float] = {}
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
                rate = measure(task, backend, parallel, episodes, scratch)
                first = first or rate
                print(f"{backend:8} {parallel:>3} {episodes:>8} {rate:>8.1f} "
                      f"{rate / first:>6.2f}", flush=True)
            memory[backend] = memory_per_episode(task, backend, live, scratch)
    for backend, megabytes in memory.items():  # MiB per live episode
        print(f"{backend}: {megabytes:.0f} MiB of host memory per live episode "
              f"({live} live, idle)")


if __name__ == "__main__":
    main()
