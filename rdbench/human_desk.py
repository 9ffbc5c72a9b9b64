"""What the commands in a person's sandbox do in their episode: the runner's side of the
channel (rdbench/human_channel.py serves it).

- score: a `score` step of the env, as an agent's score tool call (the transcript's action,
  score and observation events, with the working time used when it was asked; working time
  stops while it grades; the episode's bookkeeping hears of it through `on_step`); then the
  deadline the prompt shows is moved by the grading's time (DEADLINE_FILE, written as root).
- submit: the session is to end (`submitted()` turns true; the human agent then closes the
  shell and submits); recorded as a `scaffold` event.
- status: working time left and used, scores so far, steps.
- help: the commands.

Every env call of the episode goes through `lock` (the episode's own steps too), so a score
asked from the shell and the episode's steps never meet. A score is refused when it would
take the episode's last step (which its end needs) or the working time is up; a score step
that ends the episode all the same (a budget running out meanwhile) leaves its result in
`final`, and the session ends as on submit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from rdbench.agents.base import ModelEventRecorder
from rdbench.agents.human import DEADLINE_FILE
from rdbench.env import RDEnv
from rdbench.human_channel import Reply, Request, error_reply

log = structlog.get_logger()

SCORE: dict[str, Any] = {"tool": "score", "input": {}}
MIN_TIME_LEFT_S = 1.0  # less than this left: no more scores (the working time is up)
HELP = """\
rdbench-score   grade your workspace on the validation split and show the score
                (working time stops while it grades)
rdbench-submit  end the session: your workspace is graded on the hidden test split
                (asks first)
rdbench-status  working time left, your scores so far, steps
rdbench-help    this list
Leaving the shell (`exit`, Ctrl-D) submits too."""


@dataclass(frozen=True)
class ScoreSeen:
    """A validation score the person asked for: when (working time used) and what it said."""

    working_s: float
    text: str


class HumanDesk:
    """The operations of one person's episode on `env`; `on_step(info)` is told each step the
    desk makes, `record` records its events (TaskInfo.record)."""

    def __init__(
        self, env: RDEnv, *, on_step: Callable[[dict[str, Any]], None],
        record: ModelEventRecorder,
    ):  # fmt: skip
        self._env = env
        self._on_step = on_step
        self._record = record
        self.lock = threading.Lock()  # held for every env call of the episode
        self.scores: list[ScoreSeen] = []
        self.final: tuple[str, float, bool, bool, dict[str, Any]] | None = None
        self._submitted = threading.Event()

    def submitted(self) -> bool:
        """True once the person submitted (or a score step ended the episode)."""
        return self._submitted.is_set()

    def handle(self, request: Request) -> Reply:
        """The reply to one request of the channel."""
        if request.op == "score":
            return self._score()
        if request.op == "submit":
            return self._submit()
        if request.op == "status":
            return {"ok": True, "text": self._status()}
        return {"ok": True, "text": HELP}

    def _score(self) -> Reply:
        if "score" not in self._env.tools:
            return error_reply("This episode gives no validation score (its score tool is "
                               "off); rdbench-submit grades your workspace on the test split")
        if not self.lock.acquire(blocking=False):
            return error_reply("A grading is already running; wait for its score")
        try:
            if self.submitted():
                return error_reply("The episode is over: your workspace is being graded")
            if self._env.time_left_s < MIN_TIME_LEFT_S:
                return error_reply("Your working time is up")
            steps = self._env.budget.steps
            if self._env.steps + 2 > steps:  # one is kept for the end of the session
                return error_reply(f"No steps left for a score: this episode has {steps} "
                                   f"steps, {self._env.steps} used by scores, and its end "
                                   "takes the last one; rdbench-submit grades your "
                                   "workspace on the test split")
            asked = self._env.elapsed_s
            step = self._env.step(SCORE)
            text, _, terminated, truncated, info = step
            self._on_step(info)
            if terminated or truncated:  # a budget the score's step spent
                self.final = (text, float(step[1]), terminated, truncated, info)
                self._submitted.set()
            self.scores.append(ScoreSeen(working_s=round(asked, 3), text=text))
            self._move_deadline()
            return {"ok": True, "text": text}
        finally:
            self.lock.release()

    def _move_deadline(self) -> None:
        """Tell the prompt the deadline moved (working time stopped while grading)."""
        sandbox = self._env.sandbox
        if sandbox is None:
            return
        deadline = int(time.time() + self._env.time_left_s)
        try:
            sandbox.write_file(DEADLINE_FILE, f"{deadline}\n", user="root")
        except Exception as error:  # the prompt shows an older deadline: nothing worse
            log.warning("channel.deadline_not_moved", error=f"{type(error).__name__}: {error}")

    def _submit(self) -> Reply:
        if not self.submitted():
            self._submitted.set()
            self._record("scaffold", {"action": "channel_submit",
                                      "text": "the person submitted with rdbench-submit",
                                      "details": {"working_s": round(self._env.elapsed_s, 3)}})
        return {"ok": True, "text": "Submitted: your shell closes now and your workspace is "
                "graded on the hidden test split."}

    def _status(self) -> str:
        env = self._env
        lines = [f"Working time left: {_clock(env.time_left_s)} "
                 f"(used {_clock(env.elapsed_s)} of {_clock(env.budget.time_s)})",
                 f"Steps: {env.steps} of {env.budget.steps} (each rdbench-score is one)"]
        if not self.scores:
            lines.append("Scores so far: none yet (rdbench-score)")
        else:
            lines.append("Scores so far:")
            lines += [f"  at {_clock(seen.working_s)}: {seen.text}" for seen in self.scores]
        return "\n".join(lines)


def _clock(seconds: float) -> str:
    whole = max(int(seconds), 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
