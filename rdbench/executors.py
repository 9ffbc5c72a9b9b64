"""Executors: how a run's episodes are carried out.

- `LocalExecutor`: threads on this machine, started as the scheduler (scheduling.py) finds room
  for their CPU and memory requests.
- `RayExecutor`: one Ray task per episode, asking Ray for the task's CPUs and memory. The
  episode runs on the node it lands on (that node's Docker engine or bubblewrap) into a
  temporary folder there; its files come back to the driver as bytes and are written into the
  run folder, result.json last and atomically. No shared file system is needed: the task's
  folder travels with the episode. Ray is optional (`pip install 'rdbench[ray]'`) and imported
  only here, only when used.

Both skip episodes whose result.json is already there (telling the observer `skipped`), and
both stop every running episode, removing its sandbox, on Ctrl-C. Both start a relay episode
(rdbench.relay) only once its predecessor finished; Ray sends the predecessor's notes along.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import structlog

from rdbench.records import EpisodeResult
from rdbench.relay import link, read_handoff, write_handoff
from rdbench.run_observer import NullObserver, RunObserver
from rdbench.runner import signals_held
from rdbench.scheduling import Resources, Scheduler, check_requests, machine_resources
from rdbench.suite import request_for
from rdbench.transcript import RESULT

log = structlog.get_logger()

WAIT_S = 0.5  # how long the driver waits for a Ray task at a time
CANCEL_GRACE_S = 30.0  # how long a stopped Ray task has to remove its sandbox itself


@dataclass
class RunReport:
    """What a run did: every episode's result, in the order given, and which were skipped
    because an earlier attempt had finished them."""

    results: list[EpisodeResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Executor(Protocol):
    """Carries out a run's episodes, writing each one's records under `out`."""

    def run(self, specs: Sequence[Any], out: Path, observer: RunObserver | None = None
            ) -> RunReport:  # fmt: skip
        """Run (or skip, when finished) every spec; KeyboardInterrupt after removing the
        running episodes' sandboxes when interrupted."""
        ...


def check_machine(specs: Sequence[Any], machine: Resources) -> None:
    """RequestTooLarge, before anything runs, if a task (or a team of workers on it) asks
    for more than `machine` has."""
    check_requests({_asker(spec): request_for(spec) for spec in specs}, machine)


def _asker(spec: Any) -> str:
    """The task's id, and the team's size when its scaffold plays a team episode (one
    sandbox per worker, so N times the task's request; fewer workers ask for less)."""
    from rdbench.agents.scaffold import load_scaffold

    workers = load_scaffold(getattr(spec, "scaffold", None)).workers
    if workers == 1:
        return str(spec.task.id)
    return f"{spec.task.id} in a team of {workers} workers (one sandbox each: fewer workers ask " \
        "for less)"


def _split_finished(specs: Sequence[Any], out: Path, observer: RunObserver,
                    report: dict[int, EpisodeResult]) -> tuple[list[tuple[int, Any]], list[str]]:
    """The specs still to run (with their index); finished ones go into `report` and are told
    to the observer as skipped."""
    from rdbench.runner import finished_result

    todo, skipped = [], []
    for index, spec in enumerate(specs):
        done = finished_result(out / spec.episode_id)
        if done is None:
            todo.append((index, spec))
            continue
        result = done
        report[index] = result
        skipped.append(spec.episode_id)
        log.info("episode.skip", episode=spec.episode_id, reason="already finished")
        _tell(observer.episode_finished, result, True)
    return todo, skipped


def _tell(method: Any, *args: Any) -> None:
    """Call an observer's method; its failure is logged, never raised."""
    try:
        method(*args)
    except Exception as error:
        log.warning("run.observer_failed", error=f"{type(error).__name__}: {error}")


class LocalExecutor:
    """Episodes in threads on this machine, as many at once as fit it and `parallel`."""

    def __init__(self, parallel: int = 1, machine: Resources | None = None):
        if parallel < 1:
            raise ValueError(f"Expected parallel >= 1, got {parallel}")
        self.parallel = parallel
        self.machine = machine or machine_resources()

    def run(self, specs: Sequence[Any], out: Path, observer: RunObserver | None = None
            ) -> RunReport:  # fmt: skip
        """Run the specs; see Executor.run."""
        from rdbench.runner import RunControl

        observer = observer or NullObserver()
        specs = link(specs)
        check_machine(specs, self.machine)
        _tell(observer.run_started, len(specs))
        done: dict[int, EpisodeResult] = {}
        try:
            todo, skipped = _split_finished(specs, out, observer, done)
            scheduler = Scheduler(self.machine, self.parallel)
            control = RunControl()
            pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="episode")
            running: dict[Future[EpisodeResult], tuple[int, Resources, str]] = {}
            try:
                while todo or running:
                    unfinished = _unfinished(todo, [item[2] for item in running.values()])
                    for item in list(todo):
                        if item[1].predecessor in unfinished:  # a relay waits its turn
                            continue
                        request = request_for(item[1])
                        if scheduler.try_acquire(request):
                            todo.remove(item)
                            future = pool.submit(run_one, item[1], out, control, observer)
                            running[future] = (item[0], request, item[1].episode_id)
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        index, request, _ = running.pop(future)
                        scheduler.release(request)
                        done[index] = future.result()
            except BaseException:
                log.warning("run.stopping", running=len(running))
                with signals_held():
                    control.stop_all()
                    pool.shutdown(wait=True, cancel_futures=True)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _tell(observer.run_finished)
        return RunReport([done[index] for index in sorted(done)], skipped)


def _unfinished(todo: list[tuple[int, Any]], running: Sequence[str]) -> set[str]:
    """The ids of the episodes still to run or running: a relay episode whose predecessor
    is among them must wait (rdbench.relay)."""
    return {spec.episode_id for _, spec in todo} | set(running)


def run_one(spec: Any, out: Path, control: Any, observer: RunObserver) -> EpisodeResult:
    """Run one episode with the runner (which tells the observer as it goes)."""
    from rdbench.runner import run_episode

    return run_episode(spec, out, control, observer=observer)


class RayExecutor:
    """Each episode a Ray task on whichever node has room for its CPUs and memory."""

    def __init__(self, parallel: int = 1, address: str | None = None):
        if parallel < 1:
            raise ValueError(f"Expected parallel >= 1, got {parallel}")
        self.parallel = parallel
        self.address = address

    def run(self, specs: Sequence[Any], out: Path, observer: RunObserver | None = None
            ) -> RunReport:  # fmt: skip
        """Run the specs as Ray tasks; see Executor.run. Joins the Ray instance this process
        already has, else connects to `address` (or starts a local one)."""
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False)
        specs = link(specs)
        check_machine(specs, _largest_node(ray))
        observer = observer or NullObserver()
        _tell(observer.run_started, len(specs))
        done: dict[int, EpisodeResult] = {}
        try:
            todo, skipped = _split_finished(specs, out, observer, done)
            self._run_remote(ray, todo, out, observer, done)
        finally:
            _tell(observer.run_finished)
        return RunReport([done[index] for index in sorted(done)], skipped)

    def _run_remote(self, ray: Any, todo: list[tuple[int, Any]], out: Path,
                    observer: RunObserver, done: dict[int, EpisodeResult]) -> None:
        remote = ray.remote(max_retries=0)(remote_episode)
        task_refs: dict[Path, Any] = {}
        running: dict[Any, tuple[int, Any]] = {}
        pending = list(todo)
        try:
            while pending or running:
                while len(running) < self.parallel:
                    unfinished = _unfinished(pending, [spec.episode_id
                                                       for _, spec in running.values()])
                    ready_to_start = [item for item in pending
                                      if item[1].predecessor not in unfinished]
                    if not ready_to_start:  # the rest wait for their relay predecessors
                        break
                    pending.remove(ready_to_start[0])
                    index, spec = ready_to_start[0]
                    if spec.task.root not in task_refs:
                        task_refs[spec.task.root] = ray.put(pack_task(spec.task.root))
                    request = request_for(spec)
                    ref = remote.options(
                        num_cpus=request.cpus,
                        memory=request.memory_mb * 2**20,
                        name=f"episode {spec.episode_id}",
                    ).remote(spec, task_refs[spec.task.root],
                             read_handoff(out, spec.predecessor))
                    running[ref] = (index, spec)
                    _tell(observer.episode_started, spec.episode_id, spec.task.id, spec.agent,
                          spec.seed)
                # short waits: back in Python often, so that Ctrl-C (a KeyboardInterrupt)
                # is raised at once, not when an episode ends
                ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    index, spec = running.pop(ref)
                    files = ray.get(ref)
                    write_episode(out / spec.episode_id, files)
                    result = _load_written(out / spec.episode_id, spec)
                    done[index] = result
                    _tell(observer.episode_finished, result, False)
        except BaseException:
            log.warning("run.stopping", running=len(running), executor="ray")
            with signals_held():
                _cancel(ray, list(running))
            raise


def _load_written(folder: Path, spec: Any) -> EpisodeResult:
    """The result the Ray task returned for `spec`, now written in `folder`."""
    from rdbench.records import RecordError, load_result

    try:
        return load_result(folder)
    except RecordError as error:
        raise RuntimeError(f"the Ray task for {spec.episode_id} returned no result: {error}"
                           ) from error


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Stop the Ray tasks `refs`: first as Ctrl-C would (each removes its own sandbox), then,
    for those still running after CANCEL_GRACE_S, by killing their worker (whose sandboxes
    the worker's reaper then removes)."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    remaining = list(refs)
    while remaining and time.monotonic() < deadline:
        _, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=1.0)
    for ref in remaining:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _largest_node(ray: Any) -> Resources:
    """The most CPUs and memory any one alive node of the Ray cluster offers."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = max((node["Resources"].get("CPU", 0.0) for node in nodes), default=0.0)
    memory = max((node["Resources"].get("memory", 0.0) for node in nodes), default=0.0)
    return Resources(cpus=float(cpus), memory_mb=int(memory // 2**20))


def import_ray() -> Any:
    """The ray module, or an error saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(
            "--executor ray needs Ray; install it with `pip install 'rdbench[ray]'`"
        ) from error
    return ray


def pack_task(root: Path) -> bytes:
    """The task folder `root` as a tar archive (task folders are small)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root, arcname=root.name)
    return buffer.getvalue()


def remote_episode(spec: Any, task_archive: bytes, handoff: str | None = None
                   ) -> dict[str, bytes]:  # fmt: skip
    """Inside a Ray task: unpack the task, run the episode into a temporary folder on this
    node, and return its files (name -> bytes). `handoff` is a relay predecessor's notes,
    laid where the episode reads them.

    The episode runs in a thread, so that a cancelled Ray task (a KeyboardInterrupt here)
    stops it the runner's way: its sandbox is removed at once, then the task ends."""
    from rdbench.runner import RunControl
    from rdbench.task import load_task

    if threading.current_thread() is threading.main_thread():
        # a cancel arrives as SIGINT; a worker that inherited it ignored would never stop
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="rdbench-ray-") as scratch:
        base = Path(scratch)
        with tarfile.open(fileobj=io.BytesIO(task_archive), mode="r:gz") as tar:
            tar.extractall(base / "task", filter="data")
        task = load_task(base / "task" / spec.task.root.name)
        local = replace(spec, task=task)
        if handoff is not None and spec.predecessor is not None:
            (base / "out" / spec.predecessor).mkdir(parents=True)
            write_handoff(base / "out" / spec.predecessor, handoff)
        control = RunControl()
        outcome: list[BaseException] = []

        def play() -> None:
            try:
                run_one(local, base / "out", control, NullObserver())
            except BaseException as error:  # handed to the task's thread below
                outcome.append(error)

        thread = threading.Thread(target=play, name="episode")
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except BaseException:  # cancelled: remove the sandbox now, then end
            control.stop_all()
            thread.join()
            raise
        if outcome:
            raise outcome[0]
        folder = base / "out" / local.episode_id
        return {str(path.relative_to(folder)): path.read_bytes()
                for path in sorted(folder.rglob("*")) if path.is_file()}


def write_episode(folder: Path, files: dict[str, bytes]) -> None:
    """Write an episode's files into `folder` (replacing an unfinished attempt), result.json
    last and atomically, so that a crash here leaves an episode to be resumed, never a
    half-written one that counts as finished."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULT).unlink(missing_ok=True)
    for name, data in sorted(files.items(), key=lambda item: item[0] == RESULT):
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(p in (".", "..") for p in parts):
            raise ValueError(f"An episode file name must be a path inside its folder, got "
                             f"{name!r}")
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
