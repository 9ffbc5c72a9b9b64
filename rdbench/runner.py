"""Episodes: one agent on one task, recorded; many of them in parallel, resumable.

Each episode writes `<out>/<episode-id>/`: transcript.jsonl as it happens, then
workspace.tar.gz and result.json (atomically) at the end. An episode whose result.json
exists and holds a score is never run again, so an interrupted run can simply be repeated.

After each action the runner reads the agent's usage, records it when it changed and hands
it to the env, which checks the token and dollar budgets and leaves API retry waits out of
working time. An agent that fails (raises) ends its episode: the workspace is still graded,
the transcript holds an `error` event and result.json says what happened.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from rdbench import __version__
from rdbench.agents import Agent, TaskInfo, Usage, make_agent
from rdbench.env import RDEnv
from rdbench.task import TaskSpec
from rdbench.transcript import RESULT, WORKSPACE, Transcript, move_atomic, write_json_atomic

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

    @property
    def agent_label(self) -> str:
        """The agent's name and model (when it has one), safe in a folder name."""
        model = self.agent_options.get("model")
        label = f"{self.agent}-{model}" if model else self.agent
        return re.sub(r"[^A-Za-z0-9._-]+", "-", label)

    @property
    def episode_id(self) -> str:
        """A stable name, so that a repeated run finds the episodes it already finished."""
        return f"{self.task.id}__{self.agent_label}__seed{self.seed}"


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
def signals_stop_the_run() -> Iterator[None]:
    """Within this block, SIGTERM and SIGHUP raise RunStopped (a KeyboardInterrupt) in the
    main thread, so `run_many` removes every sandbox of the run as it does for Ctrl-C.
    Does nothing outside the main thread (Python delivers signals only there)."""
    with _handling(STOP_SIGNALS, _raise_stop):
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
def _signals_held() -> Iterator[None]:
    """While the run's sandboxes are being removed, a second Ctrl-C or SIGTERM is logged and
    ignored, so that it cannot cut the cleanup short."""

    def hold(signum: int, frame: object) -> None:
        log.warning("run.signal_ignored", signal=signal.Signals(signum).name,
                    reason="removing the run's sandboxes")

    with _handling((signal.SIGINT, *STOP_SIGNALS), hold):
        yield


class RunControl:
    """The episodes of one run in progress, so an interrupt can stop them all at once."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._envs: set[RDEnv] = set()

    @property
    def stopped(self) -> bool:
        """True once the run was told to stop."""
        return self._stop.is_set()

    def track(self, env: RDEnv) -> None:
        """Remember a running episode's env (and stop it at once if the run is stopping)."""
        with self._lock:
            self._envs.add(env)
        self.check()

    def untrack(self, env: RDEnv) -> None:
        """Forget an env whose episode ended."""
        with self._lock:
            self._envs.discard(env)

    def check(self) -> None:
        """Raise Interrupted if the run is stopping."""
        if self._stop.is_set():
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


def finished_result(folder: Path) -> dict[str, Any] | None:
    """The result.json in `folder` if the episode finished and was graded, else None."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return None if result.get("infrastructure_error") else result


def run_episode(
    spec: EpisodeSpec, out: Path, control: RunControl | None = None
) -> dict[str, Any]:
    """Run one episode to its end and write its record under `out`; return result.json.

    With `control`, the episode can be stopped from another thread (raising Interrupted and
    writing no result.json, so that a later run resumes it)."""
    folder = out / spec.episode_id
    done = finished_result(folder)
    if done is not None:
        log.info("episode.skip", episode=spec.episode_id, reason="already finished")
        return done
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transcript.jsonl").unlink(missing_ok=True)  # an unfinished attempt restarts
    with structlog.contextvars.bound_contextvars(
        run=spec.run_id, episode=spec.episode_id, task=spec.task.id
    ):
        try:
            return _play(spec, folder, control or RunControl())
        except BaseException:
            _remove_if_unstarted(folder)
            raise


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


def _play(spec: EpisodeSpec, folder: Path, control: RunControl) -> dict[str, Any]:
    agent = make_agent(spec.agent, **spec.agent_options)
    transcript = Transcript(folder)
    env = RDEnv(
        spec.task,
        sandbox=spec.sandbox,
        tools=spec.tools,
        budget=spec.budget,
        transcript=transcript,
        labels={"rdbench.run": spec.run_id, "rdbench.episode": spec.episode_id},
    )
    started = time.monotonic()
    terminated = truncated = False
    info: dict[str, Any] = {}
    usage = Usage()
    agent_error: str | None = None
    try:
        control.track(env)
        observation, reset_info = env.reset(seed=spec.seed)
        log.info("episode.start", agent=spec.agent)
        try:
            agent.reset(
                TaskInfo(spec.task, spec.task.instructions, reset_info["tools"],
                         reset_info["budget"]),
                observation,
            )
            while not (terminated or truncated):
                control.check()
                action = agent.act(observation)
                usage = _track_usage(agent, env, transcript, usage)
                observation, _, terminated, truncated, info = env.step(action)
        except Exception as error:  # any failure of the agent's code ends its episode
            control.check()  # unless the run is stopping: then the sandbox went away
            agent_error = f"{type(error).__name__}: {error}"
            log.warning("episode.agent_error", error=agent_error)
            usage = _track_usage(agent, env, transcript, usage)
            _, _, terminated, truncated, info = env.end_early(f"agent error: {agent_error}")
        control.check()  # an interrupted episode may have failed on its removed sandbox
        transcript.write("usage", env.steps, **usage.to_dict())
        if env.final_archive is not None:
            move_atomic(env.final_archive, folder / WORKSPACE)
    finally:
        control.untrack(env)
        _close(agent)
        env.close()
        transcript.close()
    result = {
        "task_id": spec.task.id,
        "task_version": spec.task.version,
        "agent": spec.agent,
        "seed": spec.seed,
        "raw_score": info.get("raw_score"),
        "normalized_score": info.get("normalized_score"),
        "valid": info.get("valid", False),
        "message": info.get("message", ""),
        "infrastructure_error": env.grading_error,
        "terminated": terminated,
        "truncated": truncated,
        "limit_hit": env.limit_hit,
        "ended_by": "submit" if terminated else env.limit_hit or ("agent_error" if agent_error
                                                                  else None),
        "agent_error": agent_error,
        "agent_options": spec.agent_options,
        "steps": env.steps,
        "elapsed_s": round(time.monotonic() - started, 3),
        "working_s": round(env.elapsed_s, 3),
        "usage": usage.to_dict(),
        "sandbox": env.sandbox_used,
        "rdbench_version": __version__,
    }
    write_json_atomic(folder / RESULT, result)
    log.info("episode.done", score=result["normalized_score"], steps=env.steps)
    return result


def _track_usage(agent: Agent, env: RDEnv, transcript: Transcript, last: Usage) -> Usage:
    """Read the agent's usage; record it if it changed and tell the env (budgets, waits)."""
    try:
        current = agent.usage()
    except Exception as error:  # a broken usage() must not lose the episode
        log.warning("episode.usage_error", error=str(error))
        return last
    if current.to_dict() != last.to_dict():
        transcript.write("usage", env.steps, **current.to_dict())
    env.report_usage(tokens=current.total_tokens, cost_usd=current.cost_usd,
                     retry_wait_s=current.retry_wait_s)
    return replace(current)


def _close(agent: Agent) -> None:
    close = getattr(agent, "close", None)
    if callable(close):
        try:
            close()
        except Exception as error:
            log.warning("agent.close_failed", error=str(error))


def run_many(specs: list[EpisodeSpec], out: Path, *, parallel: int = 1) -> list[dict[str, Any]]:
    """Run `specs` with up to `parallel` at once (threads); results in the order given."""
    if parallel < 1:
        raise ValueError(f"Expected parallel >= 1, got {parallel}")
    control = RunControl()
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="episode")
    try:
        return list(pool.map(lambda spec: run_episode(spec, out, control), specs))
    except KeyboardInterrupt:
        log.warning("run.interrupted")
        with _signals_held():
            control.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)  # episodes end at their next check
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
