"""The agent interface and the registry of agents by short name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rdbench.sandbox.terminal import Terminal
from rdbench.task import TaskSpec

ModelEventRecorder = Callable[[str, dict[str, Any]], None]
"""Records one model event in the episode's transcript: (event type, fields), the type one of
"model_request", "model_reply", "retry" and the fields those of its model in rdbench.records
(without t, step, type, v)."""


def _discard(event_type: str, fields: dict[str, Any]) -> None:
    """The recorder of an episode that records nothing."""


@dataclass(frozen=True)
class TaskInfo:
    """What an agent is given at the start of an episode.

    `seed` is the episode's seed: an agent uses it for its own randomness and passes it to the
    model where the provider takes one. `record` is where the agent reports its model
    requests, replies and retries, so that the transcript shows why it did what it did.
    `handoff` holds the notes the previous episode of a relay left (the successor
    scaffold); `seat` is this worker's place in a team episode (None outside a team);
    `terminal` opens an interactive terminal in the sandbox, given only to an agent of a
    person (one whose `uses_terminal` is True; None for every other agent).
    """

    task: TaskSpec
    instructions: str
    tools: list[dict[str, Any]]
    budget: dict[str, Any]
    seed: int = 0
    record: ModelEventRecorder = field(default=_discard, compare=False, repr=False)
    handoff: str | None = None
    seat: TeamSeat | None = field(default=None, compare=False)
    terminal: TerminalAccess | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class TerminalAccess:
    """How an agent of a person (the human agent) works in the episode's sandbox itself.

    `open(cmd, *, env, size, timeout)` starts `cmd` as the agent user in its home with an
    interactive terminal (rdbench.sandbox.terminal.Terminal), under the same walls and limits
    as the agent's tools; `time_left()` is the episode's working time left in seconds (the
    env's clock, which stops while the workspace is graded); `submitted()` turns true once
    the person submitted from inside the sandbox (`rdbench-submit`, over the episode's
    channel: rdbench/human_channel.py), when the session is to end and the agent submit.
    What the person does there reaches the records through the agent's own actions and
    events, and the session itself through the asciinema cast the agent writes to `cast`
    (rdbench.cast; None: unrecorded)."""

    open: Callable[..., Terminal]
    time_left: Callable[[], float]
    submitted: Callable[[], bool] = field(default=lambda: False)
    cast: Path | None = None


@dataclass(frozen=True)
class TeamSeat:
    """One worker's place in a team episode: its index (0-based), the team's size, and the
    message board the team shares (rdbench.team.Board: post, read)."""

    index: int
    size: int
    board: Any = field(compare=False, repr=False)


@dataclass
class Usage:
    """Model usage of an agent so far in an episode: tokens, dollars, API requests.

    `input_tokens` counts uncached prompt tokens; cache reads and writes are counted apart
    (they are priced apart). `retry_wait_s` is the time spent sleeping before API retries,
    which does not count as the episode's working time.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0
    retry_wait_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Every token the model read or wrote: what the `tokens` budget counts."""
        return (
            self.input_tokens + self.output_tokens + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def to_dict(self) -> dict[str, Any]:
        """The usage as result.json and the transcript record it."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "requests": self.requests,
            "retries": self.retries,
            "retry_wait_s": round(self.retry_wait_s, 3),
            **({"extra": self.extra} if self.extra else {}),
        }


class AgentError(RuntimeError):
    """The agent failed during an episode: its program crashed or printed garbage, or its
    API kept failing after retries. The episode ends and the workspace is still graded."""


class AgentConfigError(ValueError):
    """An agent cannot be made as asked (a missing API key, an unknown option); the message
    says what to change."""


class Agent(Protocol):
    """Turns observations into actions (tool calls).

    The runner calls `reset` once, then `act` until the episode ends, reading `usage` after
    each `act`. An agent may also define `end(reason) -> str | None`, called once when the
    episode ended without an error (reason: "submitted", "limit", ...), returning notes for
    the next episode of a relay (or None); and `close()` (no arguments), called once at the
    end of the episode whatever happened, to free what it holds (a subprocess, a client).
    An agent of a person sets `uses_terminal = True` to be given TaskInfo.terminal.
    `act` raises AgentError when it cannot go on; the episode then ends and is graded.
    """

    name: str

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Start a new episode with the task's information and the first observation."""
        ...

    def act(self, observation: str) -> dict[str, Any]:
        """The next action, `{"tool": ..., "input": {...}}`, given the last observation."""
        ...

    def usage(self) -> Usage:
        """Tokens and dollars used so far in this episode."""
        ...


AgentFactory = Callable[..., Agent]
AGENTS: dict[str, AgentFactory] = {}


def agent(name: str) -> Callable[[AgentFactory], AgentFactory]:
    """Register an agent factory under `name` (used by --agent)."""

    def register(factory: AgentFactory) -> AgentFactory:
        AGENTS[name] = factory
        return factory

    return register
