"""One episode played: the agent acts on the env until the episode ends, the final grading
is retried on the saved workspace when its machinery failed, and the result is recorded.

The runner (rdbench.runner) decides which episodes run; this module plays one. It reads what
the env tells it (reset info, each step's info, the final step's info), never the env's
attributes, and records an `EpisodeResult`.

After each action it reads the agent's usage, records it when it changed and hands it to the
env, which checks the token and dollar budgets and leaves API retry waits out of working
time. An agent that fails (raises) ends its episode: the workspace is still graded, the
transcript holds an `error` event and result.json says what happened (outcome agent_error).

An episode of a person (an agent with `uses_terminal`) gives their sandbox a channel to the
runner (rdbench/human_channel.py) whose operations its desk carries out
(rdbench/human_desk.py): a score asked there is a step of the env, in this episode's
bookkeeping as the agent's own steps are.
An agent of a person is given the episode's cast file to record the session to (rdbench.cast,
`session.cast`); result.json names the cast (`recording`) and, when the agent says the person
left mid-episode (its `ended_by`), records that (`ended_by: person_left`): their workspace is
graded as they left it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from rdbench import __version__, infrastructure
from rdbench.agents import Agent, TaskInfo, Usage, make_agent
from rdbench.agents.base import TeamSeat, TerminalAccess
from rdbench.agents.scaffold import load_scaffold
from rdbench.cast import CAST
from rdbench.env import RDEnv
from rdbench.grading import default_factory, grade_archive
from rdbench.human_channel import ChannelServer, Request, error_reply
from rdbench.human_desk import HumanDesk
from rdbench.infrastructure import (
    InfrastructureFailure,
    backoff_s,
    describe,
    is_infrastructure_error,
    retry_infrastructure,
)
from rdbench.observation import Observation
from rdbench.records import EpisodeResult, Outcome, RecordError, UsageRecord, parse_event
from rdbench.relay import HANDOFF, read_handoff, write_handoff
from rdbench.run_observer import EpisodeProgress, RunObserver
from rdbench.sandbox.base import Sandbox, SandboxConfig, TrackedSandbox
from rdbench.transcript import (
    RESULT,
    WORKSPACE,
    Transcript,
    move_atomic,
    now_iso,
    write_json_atomic,
)

if TYPE_CHECKING:
    from rdbench.runner import EpisodeSpec, RunControl

log = structlog.get_logger()


@dataclass
class EpisodeState:
    """What the runner learns of an episode as it goes."""

    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now_iso)
    acting_since: float = 0.0  # when the sandbox was ready
    step: int = 0
    usage: Usage = field(default_factory=Usage)
    grading_s: float = 0.0  # validation gradings (not working time)
    last_score: float | None = None
    agent_error: str | None = None
    no_action: bool = False
    retries: int = 0  # infrastructure retries
    terminated: bool = False
    truncated: bool = False
    ended_by: Literal["person_left"] | None = None  # the agent's word: the person left
    recording: str | None = None  # the terminal session's cast, in the episode folder


@dataclass(frozen=True)
class FinalGrade:
    """The episode's final grade, or the infrastructure error that kept it from one."""

    raw_score: float | None
    normalized_score: float | None
    valid: bool
    message: str
    infrastructure_error: str | None


def play(
    spec: EpisodeSpec, folder: Path, control: RunControl, observer: RunObserver
) -> EpisodeResult:
    """Play `spec` in `folder` (transcript.jsonl, workspace.tar.gz, result.json) and return
    its result. Interrupted (writing no result.json) if `control` stops the run. A scaffold
    with several workers plays a team episode (rdbench.team); a relay episode starts with
    its predecessor's notes (rdbench.relay)."""
    if load_scaffold(spec.scaffold).workers > 1:
        from rdbench.team import play_team

        return play_team(spec, folder, control, observer)
    tell(observer.episode_started, spec.episode_id, spec.task.id, spec.agent, spec.seed)
    handoff = read_handoff(folder.parent, spec.predecessor)
    played = play_agent(spec, folder, control, observer, handoff=handoff)
    if played.grade is None:
        failed = start_failed_result(spec, played.episode, played.start_error or "")
        return write_result(folder, failed)
    result = result_of(spec, played.episode, played.reset_info, played.final, played.grade)
    log.info("episode.done", outcome=result.outcome, score=result.normalized_score,
             steps=result.steps)
    return write_result(folder, result)


@dataclass
class Played:
    """One agent's work on a task (an episode, or one worker of a team), graded, before its
    result is made: or why its sandbox never started (`grade` None, `start_error`)."""

    episode: EpisodeState
    reset_info: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    grade: FinalGrade | None = None
    start_error: str | None = None


def play_agent(
    spec: EpisodeSpec,
    folder: Path,
    control: RunControl,
    observer: RunObserver,
    *,
    handoff: str | None = None,
    seat: TeamSeat | None = None,
    labels_extra: dict[str, str] | None = None,
) -> Played:
    """One agent on `spec`'s task in `folder` (its transcript and workspace), to its final
    grade: the whole of a single episode, or one worker of a team (`seat`, whose sandboxes
    carry `labels_extra` too). Interrupted if `control` stops the run."""
    agent = make_agent(spec.agent, **spec.agent_options,
                       **({"scaffold": spec.scaffold} if spec.scaffold is not None else {}))
    transcript = Transcript(folder)
    labels = {"rdbench.run": spec.run_id, "rdbench.episode": spec.episode_id}
    labels.update(labels_extra or {})
    episode = EpisodeState()
    desk: HumanDesk | None = None
    # a person's sandbox gets a channel to the runner: rdbench-score, rdbench-submit, ...
    channel = (ChannelServer(lambda request: _desk_reply(desk, request))
               if getattr(agent, "uses_terminal", False) else None)  # fmt: skip
    try:
        env = RDEnv(spec.task, sandbox=spec.backend, tools=spec.tools, budget=spec.budget,
                    transcript=transcript, labels=labels,
                    channel_dir=None if channel is None else channel.folder)  # fmt: skip
    except BaseException:
        if channel is not None:
            channel.close()
        raise
    if channel is not None:
        desk = HumanDesk(env, record=_model_event_recorder(transcript, episode),
                         on_step=lambda info: _desk_step(spec, episode, observer, info))
    (folder / HANDOFF).unlink(missing_ok=True)  # an unfinished attempt's notes
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
                return Played(episode, start_error=str(failure))
            episode.retries = started.retries
            episode.acting_since = time.monotonic()
            observation, reset_info = started.value
            log.info("episode.start", agent=spec.agent, sandbox=reset_info["sandbox"])
            info = _act(agent, env, spec, Observation.from_info(observation, reset_info),
                        reset_info, transcript, episode, control, observer,
                        handoff=handoff, seat=seat, desk=desk)
            control.check()  # an interrupted episode may have failed on its removed sandbox
            final = info
            archive = final["workspace_archive"]
            if archive is not None:
                move_atomic(archive, folder / WORKSPACE)
        finally:
            control.untrack(env)
            _close(agent)
            env.close()
            if channel is not None:
                channel.close()
        grade = _final_grade(spec, final, folder, transcript, episode, control)
        transcript.write("usage", episode.step, **episode.usage.to_dict())
    finally:
        transcript.close()
    return Played(episode, reset_info, final, grade)


def _act(
    agent: Agent,
    env: RDEnv,
    spec: EpisodeSpec,
    observation: Observation,
    reset_info: dict[str, Any],
    transcript: Transcript,
    episode: EpisodeState,
    control: RunControl,
    observer: RunObserver,
    *,
    handoff: str | None = None,
    seat: TeamSeat | None = None,
    desk: HumanDesk | None = None,
) -> dict[str, Any]:
    """The agent acts until the episode ends; the final step's info. An agent that fails
    (raises) or stops acting (returns None) ends the episode early, graded as it is. An
    agent that did not fail is then asked for notes for its successor (`end`). With a
    person's `desk` (their channel), every env call holds its lock, and a score asked from
    the sandbox that ended the episode gives the final info."""
    info: dict[str, Any] = {}
    env_calls = desk.lock if desk is not None else contextlib.nullcontext()
    terminal = _terminal_access(agent, env, desk, transcript.folder / CAST)
    try:
        agent.reset(
            TaskInfo(spec.task, reset_info["instructions"], reset_info["tools"],
                     reset_info["budget"], seed=spec.seed,
                     record=_model_event_recorder(
                         transcript, episode, None if seat is None else seat.index),
                     handoff=handoff, seat=seat, terminal=terminal),
            observation,
        )
        while not (episode.terminated or episode.truncated):
            control.check()
            action = agent.act(observation)
            episode.usage = _track_usage(agent, env, transcript, episode.usage, episode.step)
            if action is None:
                episode.no_action = True
                log.warning("episode.no_action")
                with env_calls:
                    _, _, episode.terminated, episode.truncated, info = env.end_early(
                        "the agent stopped acting without submitting")
                break
            step = _step(env, action, desk)
            text, _, episode.terminated, episode.truncated, info = step
            if desk is not None and step is desk.final:
                break  # a score asked in the sandbox ended the episode (counted there)
            episode.step += 1
            _note_validation(episode, info)
            observation = Observation.from_info(text, info)
            tell(observer.episode_progress, _progress(spec, episode, info))
    except Exception as error:  # any failure of the agent's code ends its episode
        control.check()  # unless the run is stopping: then the sandbox went away
        episode.agent_error = describe(error)
        log.warning("episode.agent_error", error=episode.agent_error)
        episode.usage = _track_usage(agent, env, transcript, episode.usage, episode.step)
        with env_calls:
            if desk is not None and desk.final is not None:
                _, _, episode.terminated, episode.truncated, info = desk.final
            else:
                _, _, episode.terminated, episode.truncated, info = env.end_early(
                    f"agent error: {episode.agent_error}")
    if terminal is not None:
        _note_person(agent, terminal, episode)
    if episode.agent_error is None:
        _hand_off(agent, env, transcript, episode, _end_reason(episode, info))
    return info


def _terminal_access(
    agent: Agent, env: RDEnv, desk: HumanDesk | None = None, cast: Path | None = None
) -> TerminalAccess | None:
    """A terminal into the env's sandbox for an agent of a person (`uses_terminal`), with
    the file to record the session to (`cast`), else None: other agents act only through
    the env's recorded tools. With the person's `desk`, it tells when they submitted from
    the sandbox."""
    if not getattr(agent, "uses_terminal", False):
        return None
    return TerminalAccess(open=env.open_terminal, time_left=lambda: env.time_left_s, cast=cast,
                          **({"submitted": desk.submitted} if desk is not None else {}))


def _step(
    env: RDEnv, action: Any, desk: HumanDesk | None
) -> tuple[str, Any, bool, bool, dict[str, Any]]:
    """env.step(action); with a person's desk, under its lock, or, when a score asked in the
    sandbox has ended the episode meanwhile, that score's final step."""
    if desk is None:
        return env.step(action)
    with desk.lock:
        return desk.final if desk.final is not None else env.step(action)


def _desk_reply(desk: HumanDesk | None, request: Request) -> dict[str, Any]:
    """The channel's reply: the desk's, once the episode has one."""
    if desk is None:
        return error_reply("The episode is starting; try again in a moment")
    return desk.handle(request)


def _desk_step(
    spec: EpisodeSpec, episode: EpisodeState, observer: RunObserver, info: dict[str, Any]
) -> None:
    """A step the person's desk made (a score asked from the sandbox), in the episode's
    bookkeeping as the agent's own steps are."""
    episode.step += 1
    _note_validation(episode, info)
    tell(observer.episode_progress, _progress(spec, episode, info))


def _note_person(agent: Agent, terminal: TerminalAccess, episode: EpisodeState) -> None:
    """Keep what a person's episode adds to its result: the cast it recorded, and whether
    the person left mid-episode (the agent's `ended_by`)."""
    if terminal.cast is not None and terminal.cast.is_file():
        episode.recording = terminal.cast.name
    if getattr(agent, "ended_by", None) == "person_left":
        episode.ended_by = "person_left"


def _end_reason(episode: EpisodeState, info: dict[str, Any]) -> str:
    """How the episode ended, as the agent's `end` hears it."""
    if episode.terminated:
        return "submitted"
    return "limit" if info.get("limit_hit") else "no_action"


def _hand_off(
    agent: Agent, env: RDEnv, transcript: Transcript, episode: EpisodeState, reason: str
) -> None:
    """Ask the agent (its optional `end`) for notes for a relay successor; write them to
    handoff.md and record them (a `scaffold` event, "handoff_out"). A failing `end` is
    recorded and logged; the episode keeps its grade."""
    end = getattr(agent, "end", None)
    if not callable(end):
        return
    try:
        notes = end(reason)
    except Exception as error:  # the notes are extra: their failure costs the episode nothing
        log.warning("episode.end_failed", error=describe(error))
        transcript.write("error", episode.step,
                         message=f"the agent's end() failed: {describe(error)}"[:2000], agent=True)
        notes = None
    episode.usage = _track_usage(agent, env, transcript, episode.usage, episode.step)
    if notes:
        write_handoff(transcript.folder, notes)
        transcript.write("scaffold", episode.step, action="handoff_out", text=notes)


def _note_validation(episode: EpisodeState, info: dict[str, Any]) -> None:
    """Keep a validation grading's score and time (a `score` call's info)."""
    validation = info.get("validation")
    if isinstance(validation, dict):
        episode.last_score = validation.get("normalized_score")
        episode.grading_s += float(validation.get("grading_s") or 0.0)


def _progress(spec: EpisodeSpec, episode: EpisodeState, info: dict[str, Any]) -> EpisodeProgress:
    """The episode's state after a step, for the observer. Working time is the final step's
    when given, else wall time less API retry waits and validation gradings."""
    working = info.get("working_s")
    if working is None:
        working = (time.monotonic() - episode.acting_since - episode.usage.retry_wait_s
                   - episode.grading_s)
    return EpisodeProgress(
        episode_id=spec.episode_id, task_id=spec.task.id, agent=spec.agent, seed=spec.seed,
        step=episode.step, working_s=round(max(float(working), 0.0), 3),
        tokens=episode.usage.total_tokens, cost_usd=episode.usage.cost_usd,
        last_score=episode.last_score,
    )


def _model_event_recorder(
    transcript: Transcript, episode: EpisodeState, worker: int | None = None
) -> Callable[[str, dict[str, Any]], None]:
    """TaskInfo.record for this episode: the agent's model events, checked against their
    record models and written to the transcript at the current step (a team worker's
    scaffold events with its index). An invalid event is logged and recorded as an `error`
    event; it never ends the episode."""

    def record(event_type: str, fields: dict[str, Any]) -> None:
        if event_type == "scaffold" and worker is not None and fields.get("worker") is None:
            fields = {**fields, "worker": worker}
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


MODEL_EVENTS = frozenset({"model_request", "model_reply", "retry", "scaffold"})
"""The transcript events an agent records through TaskInfo.record."""


def _record_fault(transcript: Transcript, step: int, message: str) -> None:
    transcript.write("error", step, message=message, infrastructure=True)


def _final_grade(
    spec: EpisodeSpec,
    final: dict[str, Any],
    folder: Path,
    transcript: Transcript,
    episode: EpisodeState,
    control: RunControl,
) -> FinalGrade:
    """The final grade. A final grading whose machinery failed is retried on the saved
    workspace archive with backoff; if it keeps failing, the infrastructure error stays."""
    graded = FinalGrade(raw_score=final.get("raw_score"),
                        normalized_score=final.get("normalized_score"),
                        valid=bool(final.get("valid")), message=final.get("message") or "",
                        infrastructure_error=final["infrastructure_error"])
    if graded.infrastructure_error is None:
        return graded
    archive = folder / WORKSPACE
    if not archive.is_file():  # the workspace never left the sandbox: nothing to grade
        return graded
    error = graded.infrastructure_error
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
                spec.task, archive, split="test", factory=tracked_factory(spec.backend, control),
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
        return FinalGrade(raw_score=grade.raw_score, normalized_score=grade.normalized_score,
                          valid=grade.valid, message=grade.message, infrastructure_error=None)
    control.check()  # a grading cut short by a stop is no fault
    _record_fault(transcript, episode.step, f"final grading failed "
                  f"{max(infrastructure.ATTEMPTS, 1)} times; the last: {error}")
    return replace(graded, infrastructure_error=error)


def tracked_factory(backend: str, control: RunControl) -> Callable[[SandboxConfig], Sandbox]:
    """A factory of `backend` sandboxes that the run's stop removes too (a regrading runs
    after the episode's env is closed)."""
    start = default_factory(backend)

    def factory(config: SandboxConfig) -> Sandbox:
        sandbox = start(config)
        try:
            control.track(sandbox)
        except BaseException:  # the run is stopping
            sandbox.close()
            raise
        return TrackedSandbox(sandbox, lambda _: control.untrack(sandbox))  # type: ignore[return-value]

    return factory


def _outcome(episode: EpisodeState, final: dict[str, Any], grade: FinalGrade) -> Outcome:
    if grade.infrastructure_error is not None:
        return "infrastructure_error"
    if episode.agent_error is not None:
        return "agent_error"
    if episode.no_action:
        return "no_action"
    if episode.terminated:
        return "submitted"
    return "limit" if final.get("limit_hit") else "no_action"


def result_of(
    spec: EpisodeSpec,
    episode: EpisodeState,
    reset_info: dict[str, Any],
    final: dict[str, Any],
    grade: FinalGrade,
) -> EpisodeResult:
    """The EpisodeResult of an episode that ran (to a grade, or to an infrastructure error
    of its final grading)."""
    return _record(
        spec, episode,
        outcome=_outcome(episode, final, grade),
        tools=list(reset_info["tool_names"]),
        tool_variants=dict(reset_info.get("tool_variants", {})),
        budget=dict(reset_info["budget"]),
        sandbox=final["sandbox"],
        raw_score=grade.raw_score,
        normalized_score=grade.normalized_score,
        valid=grade.valid and grade.infrastructure_error is None,
        message=grade.message,
        infrastructure_error=grade.infrastructure_error,
        limit_hit=final.get("limit_hit"),
        steps=int(final["steps"]),
        working_s=float(final["working_s"]),
        grading_s=float(final["grading_s"]) or round(episode.grading_s, 3),
    )


def start_failed_result(spec: EpisodeSpec, episode: EpisodeState, error: str) -> EpisodeResult:
    """The EpisodeResult of an episode whose sandbox never started: no score."""
    return _record(
        spec, episode, outcome="infrastructure_error",
        tools=list(spec.configuration["tools"]), budget=dict(spec.configuration["budget"]),
        sandbox=spec.backend, raw_score=None, normalized_score=None, valid=False,
        message="", infrastructure_error=error, limit_hit=None, steps=0, working_s=0.0,
        grading_s=0.0,
    )


def _record(spec: EpisodeSpec, episode: EpisodeState, **fields: Any) -> EpisodeResult:
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
        scaffold=load_scaffold(spec.scaffold).spec if spec.scaffold else None,
        scaffold_settings=load_scaffold(spec.scaffold).settings if spec.scaffold else None,
        arm=spec.arm,
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
        ended_by=episode.ended_by,
        recording=episode.recording,
        **fields,
    )


def write_result(folder: Path, result: EpisodeResult) -> EpisodeResult:
    """Write `result` as the episode's result.json (atomically); return it."""
    write_json_atomic(folder / RESULT, result.model_dump(mode="json"))
    return result


def tell(call: Callable[..., None], *args: Any) -> None:
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
