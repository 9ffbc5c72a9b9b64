"""Team episodes: N workers, each an agent in its own sandbox on the same task, sharing a
message board; the workspace with the best validation score is the team's.

A scaffold whose `workers` is above 1 (agents/team.py) makes `rdbench.episode.play` play a
team episode here. Each worker is a sub-episode in `<episode>/workers/<i>/` (its own
transcript.jsonl and workspace.tar.gz; its sandboxes carry the episode's labels and
`rdbench.worker`), with its own agent, made the way the runner makes every agent, and its
seat (`TaskInfo.seat`: index, size, the `Board`). The workers run in threads, at once.

Budget: with `split_budget` (the default) each worker gets 1/N of every additive budget
(steps and tokens rounded down, at least 1; working time; dollars), so that a team of N and a
single agent are compared at equal TOTAL budget. Without it each worker gets the whole budget
(N times a single agent's).

Choice: when every worker has ended, each worker's final workspace is graded on the
validation split in a fresh sandbox; the best (an invalid or missing grade ranks last; ties go
to the lowest index) is the team's workspace (`<episode>/workspace.tar.gz`) and its test
grade the team's score. (Each worker's env grades its own workspace on the test split when it
ends, as every episode does; that grade is in the worker's transcript and is never used to
choose.) The team's transcript.jsonl holds the board's posts (scaffold events with the
worker's index), each worker's validation grade and the final grade; result.json a
`TeamRecord`, and the workers' usage summed.
"""

from __future__ import annotations

import contextvars
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from rdbench.agents.base import TeamSeat, Usage
from rdbench.agents.scaffold import load_scaffold
from rdbench.episode import (
    EpisodeState,
    Played,
    play_agent,
    result_of,
    start_failed_result,
    tell,
    tracked_factory,
    write_result,
)
from rdbench.grading import Grade, grade_archive
from rdbench.identity import resolved_budget
from rdbench.infrastructure import InfrastructureFailure, retry_infrastructure
from rdbench.records import EpisodeResult, TeamRecord
from rdbench.run_observer import NullObserver, RunObserver
from rdbench.transcript import WORKSPACE, Transcript, move_atomic, now_iso

if TYPE_CHECKING:
    from rdbench.runner import EpisodeSpec, RunControl

log = structlog.get_logger()

WORKERS = "workers"
"""The folder of a team episode holding one sub-episode folder per worker (0, 1, ...)."""


@dataclass(frozen=True)
class Post:
    """One message on a team's board: who wrote it (0-based), what, and when."""

    worker: int
    text: str
    t: str


class Board:
    """The message board a team's workers share; safe to use from their threads.

    `post` adds a message; `read` gives a worker the other workers' posts it has not read
    yet; `posts` is the record of every post. `on_post` hears of each post as it is made
    (the team's transcript), one at a time.
    """

    def __init__(self, size: int, on_post: Callable[[Post], None] | None = None):
        if size < 1:
            raise ValueError(f"Expected a team of at least 1 worker, got {size}")
        self.size = size
        self._on_post = on_post
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        self._read_up_to = [0] * size

    def post(self, worker: int, text: str) -> Post:
        """Post `text` as `worker`; return the post."""
        self._check(worker)
        with self._lock:
            post = Post(worker, text, now_iso())
            self._posts.append(post)
            if self._on_post is not None:
                self._on_post(post)
        return post

    def read(self, worker: int) -> list[Post]:
        """The other workers' posts since `worker` last read, oldest first."""
        self._check(worker)
        with self._lock:
            start, self._read_up_to[worker] = self._read_up_to[worker], len(self._posts)
            return [post for post in self._posts[start:] if post.worker != worker]

    @property
    def posts(self) -> list[Post]:
        """Every post so far, oldest first."""
        with self._lock:
            return list(self._posts)

    def _check(self, worker: int) -> None:
        if not 0 <= worker < self.size:
            raise ValueError(f"Expected a worker index from 0 to {self.size - 1}, got {worker}")


def worker_budget(spec: EpisodeSpec, size: int) -> dict[str, Any]:
    """One worker's share of the episode's budget: 1/`size` of each additive limit."""
    total = resolved_budget(spec.task, spec.budget)
    share: dict[str, Any] = {"steps": max(1, total["steps"] // size),
                             "time_s": total["time_s"] / size}
    if total.get("tokens") is not None:
        share["tokens"] = max(1, total["tokens"] // size)
    if total.get("cost_usd") is not None:
        share["cost_usd"] = total["cost_usd"] / size
    return share


@dataclass
class Worker:
    """One worker's sub-episode, played and graded on validation."""

    played: Played
    validation: Grade | None = None
    error: str | None = None  # why its validation grading failed (infrastructure)

    @property
    def validation_score(self) -> float | None:
        """The normalized validation score, None when invalid or not graded."""
        grade = self.validation
        return grade.normalized_score if grade is not None and grade.valid else None


def play_team(
    spec: EpisodeSpec, folder: Path, control: RunControl, observer: RunObserver
) -> EpisodeResult:
    """Play `spec` as a team episode in `folder` and return its result (see the module's
    docstring). Interrupted (writing no result.json) if `control` stops the run; every
    worker's sandbox is removed then."""
    scaffold = load_scaffold(spec.scaffold)
    size = scaffold.workers
    split = bool(scaffold.settings.get("split_budget", True))
    tell(observer.episode_started, spec.episode_id, spec.task.id, spec.agent, spec.seed)
    shutil.rmtree(folder / WORKERS, ignore_errors=True)  # an unfinished attempt's workers
    team = EpisodeState()
    transcript = Transcript(folder)
    try:

        def record(post: Post) -> None:
            transcript.write("scaffold", 0, action="board_post", text=post.text,
                             worker=post.worker)

        board = Board(size, on_post=record)
        worker_spec = replace(spec, predecessor=None,
                              budget=worker_budget(spec, size) if split else dict(spec.budget))
        log.info("team.start", workers=size, split_budget=split, budget=worker_spec.budget)
        workers = _run_workers(worker_spec, folder, control, board, spec.episode_id)
        result = _team_result(spec, folder, transcript, team, workers)
    finally:
        transcript.close()
    log.info("episode.done", outcome=result.outcome, score=result.normalized_score,
             steps=result.steps, chosen=result.team.chosen if result.team else None)
    return write_result(folder, result)


def _run_workers(
    spec: EpisodeSpec, folder: Path, control: RunControl, board: Board, episode_id: str
) -> list[Worker]:
    """Every worker played (in threads, at once) and its workspace graded on validation.
    Interrupted when the run stops; a worker's unexpected error is raised after all ended."""
    size = board.size
    done: list[Worker | None] = [None] * size
    errors: list[BaseException] = []

    def work(index: int) -> None:
        labels = {"rdbench.worker": str(index)}
        try:
            with structlog.contextvars.bound_contextvars(worker=index):
                played = play_agent(spec, folder / WORKERS / str(index), control, NullObserver(),
                                    seat=TeamSeat(index, size, board), labels_extra=labels)
                done[index] = _validate(spec, folder / WORKERS / str(index), played, control,
                                        {"rdbench.run": spec.run_id,
                                         "rdbench.episode": episode_id, **labels})
        except BaseException as error:  # handed to the team's thread below
            errors.append(error)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, index),
                                name=f"worker-{index}") for index in range(size)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:  # Ctrl-C in this thread: stop every worker, then go
        control.stop_all()
        for thread in threads:
            thread.join()
        raise
    if errors:
        control.check()  # a stopped run: its workers were interrupted
        raise errors[0]
    return [worker for worker in done if worker is not None]


def _validate(
    spec: EpisodeSpec, folder: Path, played: Played, control: RunControl,
    labels: dict[str, str],
) -> Worker:
    """The worker's final workspace graded on the validation split in a fresh sandbox."""
    archive = folder / WORKSPACE
    if played.grade is None or not archive.is_file():
        return Worker(played)
    try:
        graded = retry_infrastructure(
            lambda: grade_archive(spec.task, archive, split="validation",
                                  factory=tracked_factory(spec.backend, control), labels=labels),
            what="validation grading", wait=control.wait)
    except InfrastructureFailure as failure:
        control.check()
        return Worker(played, error=str(failure))
    return Worker(played, graded.value)


def choose(scores: list[float | None]) -> int:
    """The worker whose workspace the team submits: the best validation score (None ranks
    last), ties to the lowest index."""
    return max(range(len(scores)),
               key=lambda index: (scores[index] is not None, scores[index] or 0.0, -index))


def _team_result(
    spec: EpisodeSpec, folder: Path, transcript: Transcript, team: EpisodeState,
    workers: list[Worker],
) -> EpisodeResult:
    """Record the workers' validation grades and the team's choice; the team's result."""
    team.usage = _sum_usage([worker.played.episode.usage for worker in workers])
    team.retries = sum(worker.played.episode.retries for worker in workers)
    failed = [f"worker {index}: {worker.played.start_error or worker.error}"
              for index, worker in enumerate(workers)
              if worker.played.grade is None or worker.error is not None]
    if failed:  # a team short of a worker, or unable to choose, is no fair team: run it again
        message = "; ".join(failed)
        transcript.write("error", 0, message=message[:2000], infrastructure=True)
        return start_failed_result(spec, team, message)
    scores = [worker.validation_score for worker in workers]
    for index, worker in enumerate(workers):
        grade = worker.validation
        transcript.write("scaffold", 0, action="validation", worker=index,
                         text=grade.message if grade else "no workspace",
                         details={"normalized_score": scores[index],
                                  "raw_score": grade.raw_score if grade else None})
    chosen = choose(scores)
    best = workers[chosen].played
    assert best.grade is not None
    archive = folder / WORKERS / str(chosen) / WORKSPACE
    if archive.is_file():
        copy = folder / f".{WORKSPACE}.copy"
        shutil.copyfile(archive, copy)
        move_atomic(copy, folder / WORKSPACE)
    transcript.write("grade", 0, raw_score=best.grade.raw_score,
                     normalized_score=best.grade.normalized_score, valid=best.grade.valid,
                     message=best.grade.message,
                     details={"chosen": chosen, "validation_scores": scores})
    transcript.write("usage", 0, **team.usage.to_dict())
    mine = best.episode
    team.terminated, team.truncated = mine.terminated, mine.truncated
    team.agent_error, team.no_action = mine.agent_error, mine.no_action
    validation_s = sum(worker.validation.elapsed_s for worker in workers if worker.validation)
    final = {**best.final,
             "steps": sum(worker.played.final["steps"] for worker in workers),
             "working_s": round(sum(w.played.final["working_s"] for w in workers), 3),
             "grading_s": round(sum(w.played.final["grading_s"] for w in workers)
                                + validation_s, 3)}
    reset_info = {**best.reset_info, "budget": resolved_budget(spec.task, spec.budget)}
    result = result_of(spec, team, reset_info, final, best.grade)
    record = TeamRecord(workers=len(workers), validation_scores=scores, chosen=chosen,
                        worker_steps=[int(w.played.final["steps"]) for w in workers])
    return result.model_copy(update={"team": record})


def _sum_usage(usages: list[Usage]) -> Usage:
    """The workers' usage added up (the `extra` of each kept under its worker's index)."""
    total = Usage()
    for index, usage in enumerate(usages):
        total.input_tokens += usage.input_tokens
        total.output_tokens += usage.output_tokens
        total.cache_read_tokens += usage.cache_read_tokens
        total.cache_write_tokens += usage.cache_write_tokens
        total.cost_usd += usage.cost_usd
        total.requests += usage.requests
        total.retries += usage.retries
        total.retry_wait_s += usage.retry_wait_s
        if usage.extra:
            total.extra[f"worker{index}"] = usage.extra
    return total

