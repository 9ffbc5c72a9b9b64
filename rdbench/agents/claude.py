"""claude: Claude through the `anthropic` SDK's Messages API, with tool use.

`ClaudeProvider` turns the neutral conversation (rdbench.agents.conversation) into a
Messages API request and its reply back: turns become content blocks (tool_use,
tool_result, text; an assistant turn's own blocks, signed thinking included, are sent back
as they were), prompt caching puts breakpoints on the tools, the system prompt and the
growing conversation, and a "prompt is too long" refusal is a ContextOverflow. The `claude`
agent is the shared chat loop (chat.py) with this provider and a scaffold (agents/*.py):
retries (retry.py; the SDK's own are off), usage and cost (pricing.py), trimming or other
memory (the scaffold), and the events recorded for each request and reply.

Extended thinking is off unless `thinking` asks for it (a budget in tokens, `adaptive`);
its text is then recorded with the reply. The Messages API takes no seed, so the episode's
seed reaches only the agent's own randomness (retry jitter).

The API key comes from ANTHROPIC_API_KEY; without it the agent cannot be made.
"""

from __future__ import annotations

import os
from typing import Any

from rdbench.agents.base import AgentConfigError, AgentError, agent
from rdbench.agents.chat import ChatAgent, is_context_overflow
from rdbench.agents.conversation import (
    ContextOverflow,
    ModelReply,
    ModelRequest,
    TokenCount,
    ToolRequest,
    Turn,
)
from rdbench.agents.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after

DEFAULT_MODEL = "claude-sonnet-5-5"
CACHE = {"type": "ephemeral"}


class ClaudeProvider:
    """The Anthropic Messages API as a Provider: one attempt per `complete`."""

    what = "Anthropic Messages API"

    def __init__(
        self, *, key: str, model: str, max_tokens: int, thinking: dict[str, Any] | None,
        base_url: str | None, request_timeout: float,
    ):
        import anthropic  # here, so that listing agents does not import the SDK

        self._anthropic = anthropic
        self.client = anthropic.Anthropic(
            api_key=key, base_url=base_url, max_retries=0, timeout=request_timeout
        )
        self.model = model
        self.max_tokens = max_tokens
        self.thinking = thinking

    def complete(self, request: ModelRequest) -> ModelReply:
        """One Messages API call; ContextOverflow or AgentError for a refusal no retry
        mends, the SDK's own error for one worth retrying."""
        try:
            reply = self.client.messages.create(**self.params(request))
        except self._anthropic.BadRequestError as error:
            if is_context_overflow(str(error)):
                raise ContextOverflow(f"Anthropic: {error}") from error
            raise AgentError(f"Anthropic rejected the request: {error}") from error
        except self._anthropic.APIStatusError as error:
            if self.retryable(error):
                raise
            raise AgentError(f"Anthropic API error {error.status_code}: {error}") from error
        return _reply(reply)

    def params(self, request: ModelRequest) -> dict[str, Any]:
        """The Messages API request for `request`."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [{"type": "text", "text": request.system, "cache_control": CACHE}],
            "messages": _with_cache_breakpoints(_merged(self.messages(request.turns))),
        }
        tools = [{"name": t["name"], "description": t["description"],
                  "input_schema": t["input_schema"]} for t in request.tools]
        if tools:
            params["tools"] = [*tools[:-1], {**tools[-1], "cache_control": CACHE}]
        if self.thinking is not None:
            params["thinking"] = self.thinking
        return params

    def messages(self, turns: list[Turn]) -> list[dict[str, Any]]:
        """`turns` as Messages API messages, one each (as a request records them)."""
        return [_message(turn) for turn in turns]

    def retryable(self, error: Exception) -> bool:
        """A dropped connection, 408, 409, 429, 5xx, 529."""
        errors = self._anthropic
        if isinstance(error, errors.APIConnectionError):
            return True
        return isinstance(error, errors.APIStatusError) and error.status_code in RETRY_STATUSES

    def retry_after(self, error: Exception) -> float | None:
        """The server's retry-after, if it sent one."""
        response = getattr(error, "response", None)
        return parse_retry_after(getattr(response, "headers", None))

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


@agent("claude")
class ClaudeAgent(ChatAgent):
    """Claude through the Anthropic Messages API (key from ANTHROPIC_API_KEY).

    `thinking` turns on extended thinking: a budget in tokens (at least 1024, below
    `max_tokens`), "adaptive", or "disabled"; the thinking is recorded with each reply. The
    API has no seed parameter: the episode's seed only seeds the agent's retry jitter.
    `scaffold` chooses what the model sees and remembers (agents/*.py; default plain).
    """

    name = "claude"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 16_000,
        thinking: str | int | None = None,
        context_limit: int = 200_000,
        trim_at: float = 0.8,
        base_url: str | None = None,
        system_prompt: str | None = None,
        max_retries: int = 8,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 60.0,
        request_timeout: float = 600.0,
        max_idle_replies: int = 3,
        price_file: str | None = None,
        scaffold: str | None = None,
    ):
        key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
        if not key:
            raise AgentConfigError(
                "ANTHROPIC_API_KEY is not set: the claude agent needs an Anthropic API key. "
                "Export it (export ANTHROPIC_API_KEY=...) and run again."
            )
        if max_tokens < 1:
            raise AgentConfigError(f"Expected --max-tokens >= 1, got {max_tokens}")
        provider = ClaudeProvider(
            key=key, model=model, max_tokens=max_tokens,
            thinking=_thinking_param(thinking, max_tokens), base_url=base_url,
            request_timeout=request_timeout,
        )
        super().__init__(
            provider, scaffold, context_limit=context_limit, trim_at=trim_at,
            max_idle_replies=max_idle_replies, system_prompt=system_prompt,
            price_file=price_file,
            retry=RetryPolicy(max_retries, retry_base_delay, retry_max_delay),
        )
        self.thinking = provider.thinking
        self.max_tokens = max_tokens


def _message(turn: Turn) -> dict[str, Any]:
    """One turn as a Messages API message."""
    if turn.role == "assistant":
        if isinstance(turn.native, list) and turn.native:
            return {"role": "assistant", "content": turn.native}
        blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.tool, "input": c.input}
                   for c in turn.calls]
        return {"role": "assistant",
                "content": blocks or [{"type": "text", "text": "(empty reply)"}]}
    content: list[dict[str, Any]] = [
        {"type": "tool_result", "tool_use_id": answer.call.id,
         "content": answer.text or "(no output)",
         **({"is_error": True} if answer.is_error else {})}
        for answer in turn.answers
    ]
    if turn.text or not content:
        content.append({"type": "text", "text": turn.text or "(nothing)"})
    return {"role": "user", "content": content}


def _merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with consecutive messages of one role joined (a scaffold's note after
    the answers becomes a text block at the end of the same user message)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {**merged[-1], "content": [*merged[-1]["content"],
                                                    *message["content"]]}
        else:
            merged.append(message)
    return merged


def _reply(reply: Any) -> ModelReply:
    """The SDK's Message as a neutral reply."""
    given = [block for block in map(_block_param, reply.content) if block is not None]
    content = given or [{"type": "text", "text": "(empty reply)"}]
    calls = [ToolRequest(block["id"], block["name"], block["input"])
             for block in content if block["type"] == "tool_use"]
    turn = Turn("assistant", text="\n\n".join(b["text"] for b in given if b["type"] == "text"),
                calls=calls, thinking=_thinking_text(content), native=content)
    usage = reply.usage
    tokens = TokenCount(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                        cache_read_tokens=usage.cache_read_input_tokens or 0,
                        cache_write_tokens=usage.cache_creation_input_tokens or 0)
    return ModelReply(turn, reply.stop_reason, tokens)


def _thinking_param(thinking: str | int | None, max_tokens: int) -> dict[str, Any] | None:
    """The `thinking` request field: "adaptive", "disabled", or a budget in tokens."""
    if thinking is None:
        return None
    if thinking in ("adaptive", "disabled"):
        return {"type": thinking}
    try:
        budget = int(thinking)
    except ValueError:
        raise AgentConfigError(
            f"thinking must be adaptive, disabled or a budget in tokens, got {thinking!r}"
        ) from None
    if not 1024 <= budget < max_tokens:
        raise AgentConfigError(
            f"The thinking budget must be at least 1024 and below --max-tokens ({max_tokens}), "
            f"got {budget}; raise --max-tokens or lower the budget"
        )
    return {"type": "enabled", "budget_tokens": budget}


def _thinking_text(content: list[dict[str, Any]]) -> str | None:
    """The thinking of a reply's content blocks (None when it has none)."""
    parts = [
        block["thinking"] if block["type"] == "thinking" else "[redacted thinking]"
        for block in content if block["type"] in ("thinking", "redacted_thinking")
    ]
    return "\n\n".join(parts) if parts else None


def _block_param(block: Any) -> dict[str, Any] | None:
    """A reply's content block as a request may send it back (None for an empty text)."""
    kind = block.type
    if kind == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    return block.model_dump(mode="json", exclude_none=True)  # type: ignore[no-any-return]


def _with_cache_breakpoints(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with cache breakpoints on the last block of the last two user
    messages: the one just added, and the one that ended the previous (cached) prompt."""
    marked = list(messages)
    users = [i for i, message in enumerate(marked) if message["role"] == "user"][-2:]
    for i in users:
        content = marked[i]["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        marked[i] = {**marked[i], "content": [*content[:-1], {**content[-1],
                                                               "cache_control": CACHE}]}
    return marked
