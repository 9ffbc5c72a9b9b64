"""Episodes: one agent on one task, recorded; many of them in parallel, resumable.

Each episode writes `<out>/<episode-id>/`: transcript.jsonl as it happens, then
workspace.tar.gz and result.json (an `EpisodeResult`, atomically) at the end. The episode id
ends with a prefix of the episode's identity (a hash of everything that can change its
outcome), so a finished episode is skipped only by a run of the same configuration, and an
interrupted run can simply be repeated.

A sandbox that does not start and a final grading whose machinery failed are retried with
backoff (rdbench.infrastructure); if they keep failing, result.json records an
infrastructure error, never a score, and a later run tries the episode again.

rdbench.episode plays each episode; this module decides which run, in parallel threads, and
stops them all on Ctrl-C, SIGTERM or SIGHUP (but SIGHUP in a person's run, which means they
left: rdbench.hangup).
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import structlog

from rdbench.cast import CAST
from rdbench.episode import play, tell
from rdbench.hangup import on_hangup
from rdbench.identity import episode_configuration, identity_hash
from rdbench.records import EpisodeResult, RecordError, load_result
from rdbench.run_observer import NullObserver, RunObserver
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, WORKSPACE

log = structlog.get_logger()


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: which task, which agent, which seed, where."""

    task: TaskSpec
    agent: str
    seed: int = 0
    sandbox: str = "auto"
    agent_options: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    run_id: str = "local"
    tools: list[str] | None = None  # the env's tool set; None for the task's default
    scaffold: str | None = None  # what decides what the model sees (issue 13)
    arm: str | None = None  # the sweep arm's label; names the episode in place of agent-model
    predecessor: str | None = None  # a relay's previous episode (rdbench.relay sets it)

    @property
    def agent_label(self) -> str:
        """The arm's label, else the agent's name and model (when it has one), safe in a
        folder name."""
        model = self.agent_options.get("model")
        label = self.arm or (f"{self.agent}-{model}" if model else self.agent)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", label)

    @cached_property
    def configuration(self) -> dict[str, Any]:
        """Everything that can change the outcome, resolved: the task (id, version, content
        hash), the sandbox image, the agent and all its options, the scaffold, the tool set,
        the budgets, the backend ("auto" resolved) and the seed."""
        return episode_configuration(
            task=self.task, agent=self.agent, agent_options=self.agent_options,
            scaffold=self.scaffold, tools=self.tools, budget=self.budget,
            sandbox=self.sandbox, seed=self.seed,
        )

    @cached_property
    def identity(self) -> str:
        """sha256 (hex) of the canonical JSON of `configuration`."""
        return identity_hash(self.configuration)

    @property
    def backend(self) -> str:
        """The sandbox backend the episode runs on ("auto" resolved)."""
        return str(self.configuration["sandbox"])

    @property
    def episode_id(self) -> str:
        """A readable name plus a prefix of the identity: a repeated run of the same
        configuration finds the episodes it finished; any change makes new ones."""
        return f"{self.task.id}__{self.agent_label}__seed{self.seed}__{self.identity[:12]}"


class Interrupted(BaseException):
    """The run was interrupted (Ctrl-C); the episode is left unfinished, to be resumed."""


class RunStopped(KeyboardInterrupt):
    """The run was told to stop by a signal (SIGTERM, SIGHUP): handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a run the way Ctrl-C (SIGINT) does, under `signals_stop_the_run`."""


def _raise_stop(signum: int, frame: object) -> None:
    raise RunStopped(signum)


@contextlib.contextmanager
def signals_stop_the_run(*, person_at_terminal: bool = False) -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP raise RunStopped (a KeyboardInterrupt) in the
    main thread, so `run_many` removes every sandbox of the run as it does for Ctrl-C.
    Does nothing outside the main thread (Python delivers signals only there).

    With `person_at_terminal` (a person works in the run's terminal: the human agent),
    SIGHUP does not stop the run: it means their terminal closed, and their episode ends
    as they left it, graded and recorded (rdbench.hangup)."""
    if not person_at_terminal:
        with _handling(STOP_SIGNALS, _raise_stop):
            yield
        return
    with _handling((signal.SIGTERM,), _raise_stop), _handling((signal.SIGHUP,), on_hangup):
        yield


@contextlib.contextmanager
def _handling(signums: tuple[int, ...], handler: Any) -> Iterator[None]:
    """`handler` for `signums` while the block runs, then the previous handlers again; in
    the main thread only (Python delivers signals only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """While the run's sandboxes are being removed, a second Ctrl-C or SIGTERM is logged and
    ignored, so that it cannot cut the cleanup short."""

    def hold(signum: int, frame: object) -> None:
        log.warning("run.signal_ignored", signal=signal.Signals(signum).name,
                    reason="removing the run's sandboxes")

    with _handling((signal.SIGINT, *STOP_SIGNALS), hold):
        yield


class Closeable(Protocol):
    """What a run stops on an interrupt: an env, or a sandbox the runner started itself."""

    def close(self) -> None:
        """Remove it (idempotent)."""
        ...


class RunControl:
    """The episodes of one run in progress, so an interrupt can stop them all at once."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._envs: set[Closeable] = set()

    @property
    def stopped(self) -> bool:
        """True once the run was told to stop."""
        return self._stop.is_set()

    def track(self, env: Closeable) -> None:
        """Remember a running episode's env, or a sandbox (and stop it at once if the run
        is stopping)."""
        with self._lock:
            self._envs.add(env)
        self.check()

    def untrack(self, env: Closeable) -> None:
        """Forget an env (or sandbox) whose work ended."""
        with self._lock:
            self._envs.discard(env)

    def check(self) -> None:
        """Raise Interrupted if the run is stopping."""
        if self._stop.is_set():
            raise Interrupted("the run was interrupted")

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` (a backoff), or raise Interrupted as soon as the run stops."""
        if self._stop.wait(seconds):
            raise Interrupted("the run was interrupted")

    def stop_all(self) -> None:
        """Stop the run: every running episode's sandbox is removed now."""
        self._stop.set()
        with self._lock:
            envs = list(self._envs)
        for env in envs:
            try:
                env.close()
            except Exception as error:  # keep closing the others
                log.warning("run.stop_close_failed", error=str(error))


def finished_result(folder: Path) -> EpisodeResult | None:
    """The EpisodeResult in `folder` if the episode finished (graded, or ended by the agent's
    error); None if it did not, if its result is unreadable or of another schema, or if it
    ended in an infrastructure error (such an episode runs again)."""
    if not (folder / RESULT).is_file():
        return None
    try:
        result = load_result(folder)
    except RecordError as error:
        log.warning("episode.result_unreadable", folder=str(folder), error=str(error))
        return None
    return None if result.outcome == "infrastructure_error" else result


def run_episode(
    spec: EpisodeSpec,
    out: Path,
    control: RunControl | None = None,
    observer: RunObserver | None = None,
) -> EpisodeResult:
    """Run one episode to its end and write its record under `out`; return its result.

    An episode of the same identity that finished earlier is not run again: its result is
    returned and the observer hears of it as skipped. With `control`, the episode can be
    stopped from another thread (raising Interrupted and writing no result.json, so that a
    later run resumes it)."""
    watcher = observer or NullObserver()
    folder = out / spec.episode_id
    done = finished_result(folder)
    if done is not None and done.identity == spec.identity:
        log.info("episode.skip", episode=spec.episode_id, reason="already finished",
                 outcome=done.outcome, score=done.normalized_score)
        tell(watcher.episode_finished, done, True)
        return done
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("transcript.jsonl", WORKSPACE, RESULT, CAST):  # an unfinished attempt restarts
        (folder / stale).unlink(missing_ok=True)
    with structlog.contextvars.bound_contextvars(
        run=spec.run_id, episode=spec.episode_id, task=spec.task.id
    ):
        try:
            result = play(spec, folder, control or RunControl(), watcher)
        except BaseException:
            _remove_if_unstarted(folder)
            raise
    tell(watcher.episode_finished, result, False)
    return result


def _remove_if_unstarted(folder: Path) -> None:
    """Remove the folder of an episode that failed or was stopped before recording anything
    (it holds at most an empty transcript), so nothing but real records is left behind."""
    transcript = folder / "transcript.jsonl"
    try:
        if {path.name for path in folder.iterdir()} <= {transcript.name} and (
            not transcript.exists() or transcript.stat().st_size == 0
        ):
            transcript.unlink(missing_ok=True)
            folder.rmdir()
    except OSError as error:
        log.warning("episode.cleanup_failed", folder=str(folder), error=str(error))


def run_many(
    specs: list[EpisodeSpec], out: Path, *, parallel: int = 1,
    observer: RunObserver | None = None,
) -> list[EpisodeResult]:
    """Run `specs` with up to `parallel` at once (threads); results in the order given."""
    if parallel < 1:
        raise ValueError(f"Expected parallel >= 1, got {parallel}")
    control = RunControl()
    watcher = observer or NullObserver()
    tell(watcher.run_started, len(specs))
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="episode")
    try:
        return list(pool.map(lambda spec: run_episode(spec, out, control, watcher), specs))
    except KeyboardInterrupt:
        log.warning("run.interrupted")
        with signals_held():
            control.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)  # episodes end at their next check
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        tell(watcher.run_finished)
