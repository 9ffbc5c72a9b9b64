"""The conversation as every provider and scaffold sees it, in no provider's wire format.

A scaffold (agents/*.py) decides which turns the model sees; a provider (claude, openai)
turns them into its API's request and its reply back into a `Turn`. Neither knows the other:
any scaffold runs with any provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rdbench.agents.base import AgentError


@dataclass(frozen=True)
class ToolRequest:
    """One tool call a model asked for: its id (to answer it), tool name and input."""

    id: str
    tool: str
    input: Any  # a dict, or raw text when the model's arguments were not valid JSON


@dataclass(frozen=True)
class ToolAnswer:
    """The answer to one tool call: the text the model reads, and whether the call failed."""

    call: ToolRequest
    text: str
    is_error: bool = False


@dataclass
class Turn:
    """One message of the conversation.

    A user turn holds text (the briefing, a nudge, a scaffold's note) and the answers to the
    previous assistant turn's calls; an assistant turn holds the model's text, thinking and
    tool calls, and `native`: the provider's own form of that reply (signed thinking blocks),
    sent back as it was when the same provider continues the conversation.
    """

    role: Literal["user", "assistant"]
    text: str = ""
    answers: list[ToolAnswer] = field(default_factory=list)
    calls: list[ToolRequest] = field(default_factory=list)
    thinking: str | None = None
    native: Any = None

    @staticmethod
    def user(text: str, answers: list[ToolAnswer] | None = None) -> Turn:
        """A user turn."""
        return Turn("user", text=text, answers=list(answers or []))


@dataclass(frozen=True)
class TokenCount:
    """One reply's tokens as the provider reported them."""

    input_tokens: int = 0  # uncached prompt tokens
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Every token of the prompt, cached or not: how full the context window was."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class ModelRequest:
    """What one request asks: a system prompt, the tools (name, description, input_schema),
    the turns, and the episode's seed (sent where the provider takes one)."""

    system: str
    tools: list[dict[str, Any]]
    turns: list[Turn]
    seed: int = 0


@dataclass(frozen=True)
class ModelReply:
    """The model's reply: an assistant turn, why it stopped, and its tokens."""

    turn: Turn
    stop_reason: str | None
    tokens: TokenCount


class ContextOverflow(AgentError):
    """The server said the prompt does not fit the model's context window."""


class Provider(Protocol):
    """How a model is called: one request, one attempt. The chat loop retries what
    `retryable` says, waiting `retry_after` where the server said how long."""

    model: str

    def complete(self, request: ModelRequest) -> ModelReply:
        """One attempt at the request. Raises ContextOverflow when the prompt is too long,
        AgentError for a refusal that no retry mends, and the transport's own errors."""
        ...

    def retryable(self, error: Exception) -> bool:
        """True for an error worth retrying (a dropped connection, 429, 5xx)."""
        ...

    def retry_after(self, error: Exception) -> float | None:
        """The wait the server asked for with `error`, in seconds, if it said."""
        ...

    def close(self) -> None:
        """Free the HTTP client."""
        ...
