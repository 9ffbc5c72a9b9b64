"""claude: Claude through the `anthropic` SDK's Messages API, with tool use.

The env's tools become tool definitions; every tool call of a reply is run and all of them
are answered together in the next request. Prompt caching puts breakpoints on the tools, the
system prompt and the growing conversation; usage counts cache reads and writes, and cost
comes from the price table (pricing.py). Failed requests (429, 529, 5xx, connection errors)
are retried in one layer (retry.py; the SDK's own retries are off). A conversation near the
context window has its oldest turns dropped, and the notepad is shown again.

Each request, reply (text, thinking, tool calls, usage, latency) and retry is reported to the
episode's recorder (chat.py). Extended thinking is off unless `thinking` asks for it (a
budget in tokens, `adaptive`); its text is then recorded with the reply. The Messages API
takes no seed, so the episode's seed reaches only the agent's own randomness (retry jitter).

The API key comes from ANTHROPIC_API_KEY; without it the agent cannot be made.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import structlog

from rdbench.agents import observed
from rdbench.agents.base import AgentConfigError, AgentError, TaskInfo, agent
from rdbench.agents.chat import (
    NUDGE,
    TRIM_AFTER_OVERFLOW,
    TRIM_TARGET,
    ChatAgent,
    ToolRequest,
    is_context_overflow,
)
from rdbench.agents.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after, with_retries

log = structlog.get_logger()

DEFAULT_MODEL = "claude-sonnet-5-5"
CACHE = {"type": "ephemeral"}
MAX_OVERFLOW_TRIMS = 3


@agent("claude")
class ClaudeAgent(ChatAgent):
    """Claude through the Anthropic Messages API (key from ANTHROPIC_API_KEY).

    `thinking` turns on extended thinking: a budget in tokens (at least 1024, below
    `max_tokens`), "adaptive", or "disabled"; the thinking is recorded with each reply. The
    API has no seed parameter: the episode's seed only seeds the agent's retry jitter.
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
    ):
        key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
        if not key:
            raise AgentConfigError(
                "ANTHROPIC_API_KEY is not set: the claude agent needs an Anthropic API key. "
                "Export it (export ANTHROPIC_API_KEY=...) and run again."
            )
        if max_tokens < 1:
            raise AgentConfigError(f"Expected --max-tokens >= 1, got {max_tokens}")
        self.thinking = _thinking_param(thinking, max_tokens)
        super().__init__(
            model=model, context_limit=context_limit, trim_at=trim_at,
            max_idle_replies=max_idle_replies, system_prompt=system_prompt,
            price_file=price_file,
        )
        import anthropic  # here, so that listing agents does not import the SDK

        self._anthropic = anthropic
        self.client = anthropic.Anthropic(
            api_key=key, base_url=base_url, max_retries=0, timeout=request_timeout
        )
        self.max_tokens = max_tokens
        self.retry = RetryPolicy(max_retries, retry_base_delay, retry_max_delay)
        self.tools: list[dict[str, Any]] = []
        self.briefing = ""
        self.messages: list[dict[str, Any]] = []
        self._pending_trim = False

    def _start(self, info: TaskInfo, observation: str) -> None:
        self.tools = [
            {"name": t["name"], "description": t["description"],
             "input_schema": t["input_schema"]}
            for t in info.tools
        ]
        self.briefing = observation
        self.messages = [self._first_message(0)]
        self._pending_trim = False

    def _first_message(self, dropped: int) -> dict[str, Any]:
        content = [{"type": "text", "text": self.briefing}]
        if dropped:
            content.append({"type": "text", "text": self.trim_notice(dropped)})
        return {"role": "user", "content": content}

    def _turn(self, answered: list[tuple[ToolRequest, str]], *, nudge: bool) -> list[ToolRequest]:
        blocks: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": str(text) or "(no output)",
                **({"is_error": True} if observed.is_error(text) else {}),
            }
            for call, text in answered
        ]
        if nudge or (not blocks and self.messages[-1]["role"] == "assistant"):
            blocks.append({"type": "text", "text": NUDGE})
        if blocks:
            self.messages.append({"role": "user", "content": blocks})
        reply, usage = self._request()
        params = [_block_param(block) for block in reply.content]
        given = [block for block in params if block is not None]
        content = given or [{"type": "text", "text": "(empty reply)"}]
        self.messages.append({"role": "assistant", "content": content})
        calls = [
            ToolRequest(block["id"], block["name"], block["input"])
            for block in content if block["type"] == "tool_use"
        ]
        self._report_reply(
            text="\n\n".join(b["text"] for b in given if b["type"] == "text"),
            thinking=_thinking_text(content), calls=calls, stop_reason=reply.stop_reason,
            usage=usage,
        )
        log.info("claude.reply", stop_reason=reply.stop_reason, tool_calls=len(calls),
                 output_tokens=reply.usage.output_tokens)
        return calls

    def _request(self) -> tuple[Any, dict[str, Any]]:
        """The model's reply to the conversation so far, and that call's usage."""
        for _ in range(MAX_OVERFLOW_TRIMS + 1):
            if self._pending_trim:
                self._pending_trim = False
                self._trim(TRIM_TARGET)
            params = self._params()
            self._report_request(self.messages)
            try:
                reply = with_retries(
                    self._timed(functools.partial(self.client.messages.create, **params)),
                    policy=self.retry, retryable=self._retryable,
                    retry_after=_retry_after, usage=self._usage, what="Anthropic Messages API",
                    record=self._record, rng=self.rng,
                )
            except self._anthropic.BadRequestError as error:
                if not is_context_overflow(str(error)):
                    raise AgentError(f"Anthropic rejected the request: {error}") from error
                log.warning("claude.context_overflow", error=str(error)[:200])
                if not self._trim(TRIM_AFTER_OVERFLOW, overflowed=True):
                    raise AgentError(
                        f"The conversation does not fit the context window even trimmed: {error}"
                    ) from error
                continue
            except self._anthropic.APIStatusError as error:
                raise AgentError(f"Anthropic API error {error.status_code}: {error}") from error
            return reply, self._account(reply)
        raise AgentError("The conversation kept overflowing the context window after trimming")

    def _account(self, reply: Any) -> dict[str, Any]:
        usage = reply.usage
        cache_read = usage.cache_read_input_tokens or 0
        cache_write = usage.cache_creation_input_tokens or 0
        charged = self._charge(input_tokens=usage.input_tokens,
                               output_tokens=usage.output_tokens,
                               cache_read=cache_read, cache_write=cache_write)
        prompt_tokens = usage.input_tokens + cache_read + cache_write
        self._learn_ratio(prompt_tokens, [self.system_prompt, self.tools, self.messages])
        if self._needs_trim(prompt_tokens + usage.output_tokens):
            self._pending_trim = True
        return charged

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [{"type": "text", "text": self.system_prompt, "cache_control": CACHE}],
            "messages": _with_cache_breakpoints(self.messages),
        }
        if self.tools:
            params["tools"] = [*self.tools[:-1], {**self.tools[-1], "cache_control": CACHE}]
        if self.thinking is not None:
            params["thinking"] = self.thinking
        return params

    def _trim(self, share: float, *, overflowed: bool = False) -> bool:
        """Drop the oldest (assistant, user) pairs so the prompt fits `share` of the window
        (after an overflow, at least half of them); False when nothing can be dropped."""
        units = [self.messages[i : i + 2] for i in range(1, len(self.messages), 2)]
        fixed = [self.system_prompt, self.tools, self.briefing]
        drop = self._units_to_drop(units, fixed, share, overflowed=overflowed)
        if drop == 0:
            return False
        self.trims += 1
        dropped_before = self._usage.extra.get("messages_dropped", 0)
        dropped = dropped_before + 2 * drop
        self._usage.extra.update(trims=self.trims, messages_dropped=dropped)
        kept = [message for unit in units[drop:] for message in unit]
        self.messages = [self._first_message(dropped), *kept]
        log.info("claude.trim", dropped_messages=2 * drop, kept_messages=len(kept))
        return True

    def _retryable(self, error: Exception) -> bool:
        errors = self._anthropic
        if isinstance(error, errors.APIConnectionError):
            return True
        return isinstance(error, errors.APIStatusError) and error.status_code in RETRY_STATUSES

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


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


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    return parse_retry_after(getattr(response, "headers", None))


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
