"""The records an episode leaves, as typed, versioned models: result.json (`EpisodeResult`) and
each line of transcript.jsonl (one model per event type, `Event`).

Every command that reads records reads them through these models (`load_result`,
`parse_event`). Unknown fields are rejected when a record is written, so a typo in a writer
fails a test instead of silently adding a field; `schema_version` says which shape a file has,
and a reader refuses a version it does not know with a message saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

RESULT_SCHEMA: Literal[1] = 1
EVENT_SCHEMA: Literal[1] = 1

Outcome = Literal["submitted", "limit", "agent_error", "infrastructure_error", "no_action"]
"""How an episode ended: the agent submitted; a budget ran out; the agent's code failed (its
workspace is still graded); the infrastructure failed (sandbox, engine, grader: never a score);
the agent stopped acting without submitting."""


class RecordError(ValueError):
    """A record file is missing, unreadable or of another shape; the message says which."""


class Record(BaseModel):
    """A record: strict on write (unknown fields are an error), immutable once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UsageRecord(Record):
    """Model usage of an episode: tokens, dollars, API requests and retries."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0
    retry_wait_s: float = 0.0
    extra: dict[str, Any] | None = None


class TeamRecord(Record):
    """A team episode: its workers' final validation scores, and which one was graded."""

    workers: int
    validation_scores: list[float | None]
    chosen: int = Field(description="the worker whose workspace was graded (0-based)")
    worker_steps: list[int] = []


class EpisodeResult(Record):
    """What result.json holds: one finished episode."""

    schema_version: Literal[1] = RESULT_SCHEMA
    episode_id: str
    run_id: str
    identity: str = Field(description="hash of everything that can change the outcome")
    task_id: str
    task_version: str
    task_hash: str
    agent: str
    agent_options: dict[str, Any]
    seed: int
    tools: list[str]
    budget: dict[str, Any]
    sandbox: str | None = Field(description="the backend that ran the episode")
    outcome: Outcome
    raw_score: float | None
    normalized_score: float | None
    valid: bool
    message: str
    terminated: bool
    truncated: bool
    limit_hit: str | None
    agent_error: str | None
    infrastructure_error: str | None
    steps: int
    elapsed_s: float
    working_s: float
    grading_s: float = Field(description="validation gradings: not charged to working time")
    usage: UsageRecord
    started_at: str
    finished_at: str
    rdbench_version: str
    scaffold: str | None = Field(None, description="the scaffold with every setting, "
                                 "name(key=value, ...); None for an agent without one")
    scaffold_settings: dict[str, Any] | None = None
    tool_variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="tool -> its degraded behaviour's settings")
    arm: str | None = Field(None, description="the sweep arm (or named agent) it ran for")
    team: TeamRecord | None = None
    image: str | None = Field(None, description="the sandbox image's tag (bwrap: its files)")
    infrastructure_retries: int = Field(
        0, description="sandbox starts and final gradings retried after an infrastructure fault"
    )
    ended_by: Literal["person_left"] | None = Field(
        None, description="who ended the episode where `outcome` does not say it: "
        "person_left (a person's terminal closed mid-episode; their workspace was graded as "
        "they left it)")
    recording: str | None = Field(
        None, description="the terminal session's asciinema v2 cast in the episode folder "
        "(a person's episode), e.g. session.cast")

    @property
    def scored(self) -> bool:
        """True when the episode counts in a summary: graded, not an infrastructure failure."""
        return self.outcome != "infrastructure_error"


def load_result(path: str | Path) -> EpisodeResult:
    """The EpisodeResult in a result.json (or in the episode folder `path`)."""
    file = Path(path)
    if file.is_dir():
        file = file / "result.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecordError(f"{file}: not a readable result ({error})") from error
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != RESULT_SCHEMA:
        raise RecordError(
            f"{file}: result schema_version {version!r}, this rdbench reads {RESULT_SCHEMA} "
            "(re-run the episode, or read it with the rdbench version that wrote it)"
        )
    try:
        return EpisodeResult.model_validate(data)
    except ValidationError as error:
        raise RecordError(f"{file}: not a valid result: {error}") from error


# --- transcript events ------------------------------------------------------------------------


class EventBase(Record):
    """Fields every transcript line has. Strict: a field of the wrong type is an error on
    write (an int is not taken for a str, nor a str for a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    v: Literal[1] = EVENT_SCHEMA
    t: str = Field(description="UTC time, ISO 8601")
    step: int


class ResetEvent(EventBase):
    """The episode began: what the agent was given."""

    type: Literal["reset"] = "reset"
    task_id: str
    seed: int | None = Field(description="the seed reset() was given (None: none was)")
    tools: list[str]
    instructions: str = ""
    tool_definitions: list[dict[str, Any]] = []
    budget: dict[str, Any] = {}
    observation: str | None = Field(
        default=None, description="the first observation: the instructions, tools and budget"
    )
    sandbox: str | None = Field(default=None, description="the backend that runs the episode")


class ActionEvent(EventBase):
    """The agent's action: a tool call (or, if malformed, what it sent)."""

    type: Literal["action"] = "action"
    tool: str | None = None
    input: dict[str, Any] | None = None
    raw: str | None = None


class ObservationEvent(EventBase):
    """What the tool call gave: the full text, and the (possibly truncated) text the agent saw.

    `truncated` is true when the agent saw less than the command printed: its output was cut
    at the sandbox's cap, or the observation at the env's limit (then `shown` != `text`).
    """

    type: Literal["observation"] = "observation"
    text: str
    shown: str | None = None
    tool: str | None = None
    is_error: bool = False
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False


class ScoreEvent(EventBase):
    """A validation grading (the `score` tool)."""

    type: Literal["score"] = "score"
    raw_score: float | None
    normalized_score: float | None = None
    valid: bool
    message: str = ""
    grading_s: float | None = Field(
        default=None, description="how long the grading took (not charged to working time)"
    )
    elapsed_working_s: float | None = Field(
        default=None, description="the agent's working time when the grade came back"
    )
    working_s: float | None = Field(
        default=None, description="the agent's working time used when it asked for the score"
    )


class UsageEvent(EventBase, UsageRecord):
    """The agent's usage so far, when it changed (the fields of UsageRecord)."""

    model_config = EventBase.model_config
    type: Literal["usage"] = "usage"


class ErrorEvent(EventBase):
    """Something failed: the agent's code (`agent`), the infrastructure, or a tool call."""

    type: Literal["error"] = "error"
    message: str
    agent: bool = False
    infrastructure: bool = False


class SubmitEvent(EventBase):
    """The agent submitted."""

    type: Literal["submit"] = "submit"


class GradeEvent(EventBase):
    """The final grading."""

    type: Literal["grade"] = "grade"
    raw_score: float | None
    normalized_score: float | None
    valid: bool
    message: str = ""
    details: dict[str, Any] | None = None
    grading_s: float | None = None


class ModelRequestEvent(EventBase):
    """A request to the model: the system prompt (first request only) and the messages that
    are new since the previous request."""

    type: Literal["model_request"] = "model_request"
    model: str
    system: str | None = None
    messages: list[dict[str, Any]]


class ModelReplyEvent(EventBase):
    """The model's full reply: its text, its thinking (where enabled), its tool calls, the
    call's usage and latency."""

    type: Literal["model_reply"] = "model_reply"
    model: str
    text: str = ""
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] = []
    stop_reason: str | None = None
    usage: dict[str, Any] = {}
    latency_s: float


class ScaffoldEvent(EventBase):
    """Something a scaffold did that the model's requests alone do not show: a notepad
    write, a summary that replaced old turns, notes handed to or from another episode, a
    post on a team's board."""

    type: Literal["scaffold"] = "scaffold"
    action: str
    text: str = ""
    worker: int | None = None
    details: dict[str, Any] = {}


class RetryEvent(EventBase):
    """A failed API call that will be retried after `wait_s` (not working time)."""

    type: Literal["retry"] = "retry"
    attempt: int
    wait_s: float
    error: str


Event = Annotated[
    ResetEvent | ActionEvent | ObservationEvent | ScoreEvent | UsageEvent | ErrorEvent
    | SubmitEvent | GradeEvent | ModelRequestEvent | ModelReplyEvent | RetryEvent
    | ScaffoldEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any]) -> Event:
    """The typed event of one transcript line (RecordError if it is not one)."""
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as error:
        raise RecordError(f"not a transcript event: {error}") from error
