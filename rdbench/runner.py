"""Episodes: one agent on one task, recorded; many of them in parallel, resumable.

Each episode writes `<out>/<episode-id>/`: transcript.jsonl as it happens, then
workspace.tar.gz and result.json (an `EpisodeResult`, atomically) at the end. The episode id
ends with a prefix of the episode's identity (a hash of everything that can change its
outcome), so a finished episode is skipped only by a run of the same configuration, and an
interrupted run can simply be repeated.

A sandbox that does not start and a final grading whose machinery failed are retried with
backoff (rdbench.infrastructure); if they keep failing, result.json records an
infrastructure error, never a score, and a later run tries the episode again.

After each action the runner reads the agent's usage, records it when it changed and hands
it to the env, which checks the token and dollar budgets and leaves API retry waits out of
working time. An agent that fails (raises) ends its episode: the workspace is still graded,
the transcript holds an `error` event and result.json says what happened.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import structlog

from rdbench import __version__, infrastructure
from rdbench.agents import Agent, TaskInfo, Usage, make_agent
from rdbench.env import RDEnv
from rdbench.grading import default_factory, grade_archive
from rdbench.identity import episode_configuration, identity_hash
from rdbench.infrastructure import (
    InfrastructureFailure,
    backoff_s,
    describe,
    is_infrastructure_error,
    retry_infrastructure,
)
from rdbench.observation import Observation
from rdbench.records import (
    EpisodeResult,
    Outcome,
    RecordError,
    UsageRecord,
    load_result,
    parse_event,
)
from rdbench.run_observer import EpisodeProgress, NullObserver, RunObserver
from rdbench.sandbox.base import Sandbox, SandboxConfig
from rdbench.task import TaskSpec
from rdbench.transcript import (
    RESULT,
    WORKSPACE,
    Transcript,
    move_atomic,
    now_iso,
    write_json_atomic,
)

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

    @property
    def agent_label(self) -> str:
        """The agent's name and model (when it has one), safe in a folder name."""
        model = self.agent_options.get("model")
        label = f"{self.agent}-{model}" if model else self.agent
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
        _tell(watcher.episode_finished, done, True)
        return done
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transcript.jsonl").unlink(missing_ok=True)  # an unfinished attempt restarts
    with structlog.contextvars.bound_contextvars(
        run=spec.run_id, episode=spec.episode_id, task=spec.task.id
    ):
        try:
            result = _play(spec, folder, control or RunControl(), watcher)
        except BaseException:
            _remove_if_unstarted(folder)
            raise
    _tell(watcher.episode_finished, result, False)
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


@dataclass
class _Episode:
    """What the runner learns of an episode as it goes."""

    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now_iso)
    step: int = 0
    usage: Usage = field(default_factory=Usage)
    grading_s: float = 0.0  # validation gradings (not working time)
    last_score: float | None = None
    agent_error: str | None = None
    no_action: bool = False
    retries: int = 0  # infrastructure retries
    terminated: bool = False
    truncated: bool = False


def _play(
    spec: EpisodeSpec, folder: Path, control: RunControl, observer: RunObserver
) -> EpisodeResult:
    agent = make_agent(spec.agent, **spec.agent_options)
    transcript = Transcript(folder)
    labels = {"rdbench.run": spec.run_id, "rdbench.episode": spec.episode_id}
    env = RDEnv(spec.task, sandbox=spec.backend, tools=spec.tools, budget=spec.budget,
                transcript=transcript, labels=labels)
    episode = _Episode()
    _tell(observer.episode_started, spec.episode_id, spec.task.id, spec.agent, spec.seed)
    try:
        try:
            control.track(env)
            try:
                started = retry_infrastructure(
                    lambda: env.reset(seed=spec.seed), what="sandbox start", wait=control.wait,
                    on_fault=lambda attempt, error, delay: _record_fault(
                        transcript, 0, f"sandbox start failed (attempt {attempt}), retrying "
                        f"in {delay:g} s: {describe(error)}"),
                )
            except InfrastructureFailure as failure:
                control.check()  # a sandbox removed by a stop is no fault
                _record_fault(transcript, 0, str(failure))
                episode.retries = failure.retries
                return _write(folder, _start_failed(spec, episode, str(failure)))
            episode.retries = started.retries
            observation, reset_info = started.value
            reset_info = _env_info(reset_info, env, seed=spec.seed)  # ENVREC adapter
            log.info("episode.start", agent=spec.agent, sandbox=reset_info["sandbox"])
            info = _act(agent, env, spec, Observation.from_info(observation, reset_info),
                        reset_info, transcript, episode, control, observer)
            control.check()  # an interrupted episode may have failed on its removed sandbox
            final = _env_info(info, env, seed=spec.seed, final=True)  # ENVREC adapter
            archive = final["workspace_archive"]
            if archive is not None:
                move_atomic(archive, folder / WORKSPACE)
        finally:
            control.untrack(env)
            _close(agent)
            env.close()
        grade_fields = _final_grade(spec, final, folder, transcript, episode, control)
        transcript.write("usage", episode.step, **episode.usage.to_dict())
    finally:
        transcript.close()
    result = _result(spec, episode, reset_info, final, grade_fields)
    log.info("episode.done", outcome=result.outcome, score=result.normalized_score,
             steps=result.steps)
    return _write(folder, result)


def _act(
    agent: Agent,
    env: RDEnv,
    spec: EpisodeSpec,
    observation: Observation,
    reset_info: dict[str, Any],
    transcript: Transcript,
    episode: _Episode,
    control: RunControl,
    observer: RunObserver,
) -> dict[str, Any]:
    """The agent acts until the episode ends; the final step's info. An agent that fails
    (raises) or stops acting (returns None) ends the episode early, graded as it is."""
    info: dict[str, Any] = {}
    try:
        agent.reset(
            TaskInfo(spec.task, reset_info["instructions"], reset_info["tools"],
                     reset_info["budget"], seed=spec.seed,
                     record=_model_event_recorder(transcript, episode)),
            observation,
        )
        while not (episode.terminated or episode.truncated):
            control.check()
            action = agent.act(observation)
            episode.usage = _track_usage(agent, env, transcript, episode.usage, episode.step)
            if action is None:
                episode.no_action = True
                log.warning("episode.no_action")
                _, _, episode.terminated, episode.truncated, info = env.end_early(
                    "the agent stopped acting without submitting")
                break
            text, _, episode.terminated, episode.truncated, info = env.step(action)
            episode.step += 1
            _note_validation(episode, info)
            observation = Observation.from_info(text, info)
            _tell(observer.episode_progress, _progress(spec, episode, info))
    except Exception as error:  # any failure of the agent's code ends its episode
        control.check()  # unless the run is stopping: then the sandbox went away
        episode.agent_error = describe(error)
        log.warning("episode.agent_error", error=episode.agent_error)
        episode.usage = _track_usage(agent, env, transcript, episode.usage, episode.step)
        _, _, episode.terminated, episode.truncated, info = env.end_early(
            f"agent error: {episode.agent_error}")
    return info


def _note_validation(episode: _Episode, info: dict[str, Any]) -> None:
    """Keep a validation grading's score and time (a `score` call's info)."""
    validation = info.get("validation")
    if isinstance(validation, dict):
        episode.last_score = validation.get("normalized_score")
        episode.grading_s += float(validation.get("grading_s") or 0.0)


def _progress(spec: EpisodeSpec, episode: _Episode, info: dict[str, Any]) -> EpisodeProgress:
    """The episode's state after a step, for the observer. Working time is the final step's
    when given, else wall time less API retry waits and validation gradings."""
    working = info.get("working_s")
    if working is None:
        working = (time.monotonic() - episode.started - episode.usage.retry_wait_s
                   - episode.grading_s)
    return EpisodeProgress(
        episode_id=spec.episode_id, task_id=spec.task.id, agent=spec.agent, seed=spec.seed,
        step=episode.step, working_s=round(max(float(working), 0.0), 3),
        tokens=episode.usage.total_tokens, cost_usd=episode.usage.cost_usd,
        last_score=episode.last_score,
    )


def _model_event_recorder(
    transcript: Transcript, episode: _Episode
) -> Callable[[str, dict[str, Any]], None]:
    """TaskInfo.record for this episode: the agent's model events, checked against their
    record models and written to the transcript at the current step. An invalid event is
    logged and recorded as an `error` event; it never ends the episode."""

    def record(event_type: str, fields: dict[str, Any]) -> None:
        try:
            reserved = {"t", "step", "type", "v"}.intersection(fields)
            if event_type not in MODEL_EVENTS or reserved:
                raise RecordError(
                    f"agents record {', '.join(sorted(MODEL_EVENTS))} events without the "
                    f"fields t, step, type, v; got {event_type!r} with {sorted(reserved)}"
                )
            parse_event({"t": now_iso(), "step": episode.step, "type": event_type, **fields})
        except RecordError as error:
            log.warning("episode.bad_model_event", event_type=event_type, error=str(error))
            transcript.write("error", episode.step,
                             message=f"the agent recorded an invalid {event_type!r} event: "
                                     f"{error}"[:2000])
            return
        transcript.write(event_type, episode.step, **fields)  # type: ignore[arg-type]

    return record


MODEL_EVENTS = frozenset({"model_request", "model_reply", "retry"})
"""The transcript events an agent records through TaskInfo.record."""


def _record_fault(transcript: Transcript, step: int, message: str) -> None:
    transcript.write("error", step, message=message, infrastructure=True)


def _env_info(
    info: dict[str, Any], env: RDEnv, *, seed: int, final: bool = False
) -> dict[str, Any]:
    """REMOVE AT THE ENVREC MERGE (issue 11): fills the info keys the contract says the env
    provides (see /work/contract-11.md) from the env's attributes, for main's env, which
    does not provide them yet. Keys the env gives are kept as they are."""
    info = dict(info)
    if not final:
        info.setdefault("tool_names", [tool["name"] for tool in info["tools"]])
        info.setdefault("instructions", env.task.instructions)
        info.setdefault("seed", seed)
        info.setdefault("sandbox", env.sandbox_used)
        return info
    info.setdefault("infrastructure_error", info.get("grading_error", env.grading_error))
    info.setdefault("grading_s", 0.0)
    info.setdefault("sandbox", env.sandbox_used)
    info.setdefault("workspace_archive", env.final_archive)
    info.setdefault("steps", env.steps)
    info.setdefault("limit_hit", env.limit_hit)
    info.setdefault("working_s", round(env.elapsed_s, 3))
    return info


def _final_grade(
    spec: EpisodeSpec,
    final: dict[str, Any],
    folder: Path,
    transcript: Transcript,
    episode: _Episode,
    control: RunControl,
) -> dict[str, Any]:
    """The final grade's fields (raw_score, normalized_score, valid, message,
    infrastructure_error). A final grading whose machinery failed is retried on the saved
    workspace archive with backoff; if it keeps failing, the infrastructure error stays."""
    fields = {key: final.get(key) for key in ("raw_score", "normalized_score", "message")}
    fields.update(valid=bool(final.get("valid")), message=fields["message"] or "",
                  infrastructure_error=final["infrastructure_error"])
    if fields["infrastructure_error"] is None:
        return fields
    archive = folder / WORKSPACE
    if not archive.is_file():  # the workspace never left the sandbox: nothing to grade
        return fields
    error = str(fields["infrastructure_error"])
    for attempt in range(2, infrastructure.ATTEMPTS + 1):  # the env's grading was the first
        delay = backoff_s(attempt - 1)
        _record_fault(transcript, episode.step, f"final grading failed (attempt "
                      f"{attempt - 1}), retrying in {delay:g} s: {error}")
        log.warning("infrastructure.retry", what="final grading", attempt=attempt - 1,
                    wait_s=delay, error=error)
        control.wait(delay)
        episode.retries += 1
        try:
            grade = grade_archive(
                spec.task, archive, split="test", factory=_tracked_factory(spec.backend, control),
                labels={"rdbench.run": spec.run_id, "rdbench.episode": spec.episode_id},
            )
        except Exception as failure:
            if not is_infrastructure_error(failure):
                raise
            error = describe(failure)
            continue
        transcript.write("grade", episode.step, raw_score=grade.raw_score,
                         normalized_score=grade.normalized_score, valid=grade.valid,
                         message=grade.message, details=grade.details,
                         grading_s=grade.elapsed_s)
        return {"raw_score": grade.raw_score, "normalized_score": grade.normalized_score,
                "valid": grade.valid, "message": grade.message, "infrastructure_error": None}
    control.check()  # a grading cut short by a stop is no fault
    _record_fault(transcript, episode.step, f"final grading failed "
                  f"{max(infrastructure.ATTEMPTS, 1)} times; the last: {error}")
    fields["infrastructure_error"] = error
    return fields


def _tracked_factory(backend: str, control: RunControl) -> Callable[[SandboxConfig], Sandbox]:
    """A factory of `backend` sandboxes that the run's stop removes too (a regrading runs
    after the episode's env is closed)."""
    start = default_factory(backend)

    def factory(config: SandboxConfig) -> Sandbox:
        sandbox = start(config)
        try:
            control.track(sandbox)
        except Interrupted:
            sandbox.close()
            raise
        return _Untracking(sandbox, control)  # type: ignore[return-value]

    return factory


class _Untracking:
    """A sandbox that the run forgets once it is closed."""

    def __init__(self, sandbox: Sandbox, control: RunControl):
        self._sandbox = sandbox
        self._control = control

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sandbox, name)

    def close(self) -> None:
        """Close the sandbox and forget it."""
        try:
            self._sandbox.close()
        finally:
            self._control.untrack(self._sandbox)


def _outcome(episode: _Episode, final: dict[str, Any], grade: dict[str, Any]) -> Outcome:
    if grade["infrastructure_error"] is not None:
        return "infrastructure_error"
    if episode.agent_error is not None:
        return "agent_error"
    if episode.no_action:
        return "no_action"
    if episode.terminated:
        return "submitted"
    return "limit" if final.get("limit_hit") else "no_action"


def _result(
    spec: EpisodeSpec,
    episode: _Episode,
    reset_info: dict[str, Any],
    final: dict[str, Any],
    grade: dict[str, Any],
) -> EpisodeResult:
    """The EpisodeResult of an episode that ran (to a grade, or to an infrastructure error
    of its final grading)."""
    return _record(
        spec, episode,
        outcome=_outcome(episode, final, grade),
        tools=list(reset_info["tool_names"]),
        budget=dict(reset_info["budget"]),
        sandbox=final["sandbox"],
        raw_score=grade["raw_score"],
        normalized_score=grade["normalized_score"],
        valid=grade["valid"] and grade["infrastructure_error"] is None,
        message=grade["message"],
        infrastructure_error=grade["infrastructure_error"],
        limit_hit=final.get("limit_hit"),
        steps=int(final["steps"]),
        working_s=float(final["working_s"]),
        grading_s=float(final["grading_s"]) or round(episode.grading_s, 3),
    )


def _start_failed(spec: EpisodeSpec, episode: _Episode, error: str) -> EpisodeResult:
    """The EpisodeResult of an episode whose sandbox never started: no score."""
    return _record(
        spec, episode, outcome="infrastructure_error",
        tools=list(spec.configuration["tools"]), budget=dict(spec.configuration["budget"]),
        sandbox=spec.backend, raw_score=None, normalized_score=None, valid=False,
        message="", infrastructure_error=error, limit_hit=None, steps=0, working_s=0.0,
        grading_s=0.0,
    )


def _record(spec: EpisodeSpec, episode: _Episode, **fields: Any) -> EpisodeResult:
    """An EpisodeResult: the spec's and the episode's own fields, and `fields`."""
    if fields["outcome"] == "infrastructure_error":  # never a score
        fields.update(raw_score=None, normalized_score=None, valid=False)
    return EpisodeResult(
        episode_id=spec.episode_id,
        run_id=spec.run_id,
        identity=spec.identity,
        task_id=spec.task.id,
        task_version=spec.task.version,
        task_hash=spec.configuration["task"]["hash"],
        agent=spec.agent,
        agent_options=spec.agent_options,
        seed=spec.seed,
        scaffold=spec.scaffold,
        image=spec.configuration["image"],
        terminated=episode.terminated,
        truncated=episode.truncated,
        agent_error=episode.agent_error,
        elapsed_s=round(time.monotonic() - episode.started, 3),
        usage=UsageRecord(**episode.usage.to_dict()),
        started_at=episode.started_at,
        finished_at=now_iso(),
        rdbench_version=__version__,
        infrastructure_retries=episode.retries,
        **fields,
    )


def _write(folder: Path, result: EpisodeResult) -> EpisodeResult:
    write_json_atomic(folder / RESULT, result.model_dump(mode="json"))
    return result


def _tell(call: Callable[..., None], *args: Any) -> None:
    """Call an observer's method; an observer's error is logged, never the run's."""
    try:
        call(*args)
    except Exception as error:
        log.warning("run.observer_failed", method=getattr(call, "__name__", "?"),
                    error=describe(error))


def _track_usage(
    agent: Agent, env: RDEnv, transcript: Transcript, last: Usage, step: int
) -> Usage:
    """Read the agent's usage; record it if it changed and tell the env (budgets, waits)."""
    try:
        current = agent.usage()
    except Exception as error:  # a broken usage() must not lose the episode
        log.warning("episode.usage_error", error=str(error))
        return last
    if current.to_dict() != last.to_dict():
        transcript.write("usage", step, **current.to_dict())
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


def run_many(
    specs: list[EpisodeSpec], out: Path, *, parallel: int = 1,
    observer: RunObserver | None = None,
) -> list[EpisodeResult]:
    """Run `specs` with up to `parallel` at once (threads); results in the order given."""
    if parallel < 1:
        raise ValueError(f"Expected parallel >= 1, got {parallel}")
    control = RunControl()
    watcher = observer or NullObserver()
    _tell(watcher.run_started, len(specs))
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="episode")
    try:
        return list(pool.map(lambda spec: run_episode(spec, out, control, watcher), specs))
    except KeyboardInterrupt:
        log.warning("run.interrupted")
        with _signals_held():
            control.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)  # episodes end at their next check
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _tell(watcher.run_finished)
