"""What the chat-model adapters (claude, openai) share: the tool-call queue, nudges when the
model replies without a tool call, the notepad, pricing, and trimming a long conversation.

A model may call several tools in one reply. The env runs one tool per step, so the calls of
a reply are handed out one per `act`; once all are answered, their results go back to the
model together in the next request.

Every request and reply is reported to the episode's recorder (`TaskInfo.record`): a
`model_request` event with the system prompt (first request only) and the messages that are
new since the previous request, and a `model_reply` event with the model's text, thinking,
tool calls, stop reason, the call's usage and its latency. The episode's seed (`TaskInfo.seed`)
seeds the agent's own randomness (the retry jitter) and is sent to the model where the
provider takes one.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from rdbench.agents.base import AgentError, ModelEventRecorder, TaskInfo, Usage
from rdbench.agents.model_events import discard
from rdbench.agents.pricing import Price, find_price, price_table

log = structlog.get_logger()

SYSTEM_PROMPT = """\
You are an expert machine-learning research engineer. You work alone on a task in a \
sandboxed Linux machine, with the tools given to you; your home folder is the task's \
workspace. Read the instructions, look at the workspace, make a plan, and improve the \
solution step by step. Check your work (the score tool, where you have it, grades the \
current workspace on a validation split). Every reply must call at least one tool. When \
you are done, or your budget is nearly spent, call submit: the workspace as it is then is \
graded."""

NUDGE = (
    "You replied without calling a tool. Go on with the task by calling a tool; "
    "call submit when you are done."
)
TRIM_TARGET = 0.5  # after a trim, the prompt should fill about this share of the window
TRIM_AFTER_OVERFLOW = 0.4  # the same, after the server said the prompt was too long
CHARS_PER_TOKEN = 3.5  # a first guess, replaced by what the server reports
T = TypeVar("T")


@dataclass(frozen=True)
class ToolRequest:
    """One tool call a model asked for: its id (to answer it), tool name and input."""

    id: str
    tool: str
    input: Any  # a dict, or raw text when the model's arguments were not valid JSON


class ChatAgent:
    """The loop every chat-model adapter shares. A subclass implements `_start` (set up the
    conversation) and `_turn` (send the answered calls, return the model's next calls)."""

    name = "chat"

    def __init__(
        self, *, model: str, context_limit: int, trim_at: float, max_idle_replies: int,
        system_prompt: str | None, price_file: str | None,
    ):
        if context_limit < 1000:
            raise ValueError(f"Expected context_limit >= 1000 tokens, got {context_limit}")
        if not 0.1 <= trim_at < 1:
            raise ValueError(f"Expected trim_at between 0.1 and 1, got {trim_at}")
        self.model = model
        self.context_limit = context_limit
        self.trim_at = trim_at
        self.max_idle_replies = max_idle_replies
        self.system_prompt = system_prompt or SYSTEM_PROMPT
        self.price: Price | None = find_price(model, price_table(price_file))
        self._usage = Usage()
        self._queue: deque[ToolRequest] = deque()
        self._answered: list[tuple[ToolRequest, str]] = []
        self._current: ToolRequest | None = None
        self._idle = 0
        self.notepad = ""
        self.trims = 0
        self.chars_per_token = CHARS_PER_TOKEN
        self.seed = 0
        self.rng = random.Random(0)
        self._record: ModelEventRecorder = discard
        self._reported: dict[int, dict[str, Any]] = {}
        self._system_reported = False
        self._latency_s = 0.0

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Start a new conversation: the system prompt, the env's tools, the briefing."""
        if self.price is None:
            if info.budget.get("cost_usd") is not None:
                raise AgentError(
                    f"No price is known for model {self.model!r}, so a cost budget cannot be "
                    "kept; add its price in a file named by RDBENCH_PRICES (see "
                    "rdbench/agents/pricing.py) or drop the cost budget"
                )
            log.warning("agent.unpriced_model", model=self.model)
        self._usage = Usage(extra={"model": self.model})
        self._queue.clear()
        self._answered = []
        self._current = None
        self._idle = 0
        self.notepad = ""
        self.trims = 0
        self.seed = info.seed
        self.rng = random.Random(info.seed)
        self._record = info.record
        self._reported = {}
        self._system_reported = False
        self._start(info, observation)

    def act(self, observation: str) -> dict[str, Any]:
        """The next tool call: from the queue, or from a new request to the model."""
        if self._current is not None:
            self._answered.append((self._current, observation))  # an Observation, or text
            self._current = None
        while not self._queue:
            calls = self._turn(self._answered, nudge=self._idle > 0)
            self._answered = []
            if calls:
                self._idle = 0
                self._queue.extend(calls)
            else:
                self._idle += 1
                if self._idle >= self.max_idle_replies:
                    log.warning("agent.idle_submit", replies=self._idle)
                    return {"tool": "submit", "input": {}}
        call = self._queue.popleft()
        self._current = call
        if call.tool == "notepad" and isinstance(call.input, dict):
            self.notepad = str(call.input.get("content", ""))
        return {"tool": call.tool, "input": call.input}

    def usage(self) -> Usage:
        """Tokens, dollars and requests so far in this episode."""
        return self._usage

    def _start(self, info: TaskInfo, observation: str) -> None:
        raise NotImplementedError

    def _turn(self, answered: list[tuple[ToolRequest, str]], *, nudge: bool) -> list[ToolRequest]:
        raise NotImplementedError

    def _charge(
        self, *, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int,
    ) -> dict[str, Any]:
        """Add one reply's reported usage (and its cost) to the episode's; return that
        reply's usage as its `model_reply` event records it."""
        cost = 0.0
        if self.price is not None:
            cost = self.price.cost(
                input_tokens=input_tokens, output_tokens=output_tokens,
                cache_read_tokens=cache_read, cache_write_tokens=cache_write,
            )
        usage = self._usage
        usage.requests += 1
        usage.input_tokens += input_tokens
        usage.output_tokens += output_tokens
        usage.cache_read_tokens += cache_read
        usage.cache_write_tokens += cache_write
        usage.cost_usd += cost
        return {"input_tokens": input_tokens, "output_tokens": output_tokens,
                "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
                "cost_usd": round(cost, 8)}

    def _timed(self, request: Callable[[], T]) -> Callable[[], T]:
        """`request`, noting how long its last successful call took (the reply's latency;
        failed attempts and the waits between them are not in it)."""

        def timed() -> T:
            start = time.monotonic()
            result = request()
            self._latency_s = time.monotonic() - start
            return result

        return timed

    def _report_request(self, messages: list[dict[str, Any]]) -> None:
        """Record a request: the system prompt the first time, and the messages of
        `messages` not in the previous request (after a trim, the rebuilt first message)."""
        fields: dict[str, Any] = {
            "model": self.model,
            "messages": [m for m in messages if id(m) not in self._reported],
        }
        if not self._system_reported:
            fields["system"] = self.system_prompt
            self._system_reported = True
        self._record("model_request", fields)
        # holding the messages keeps their ids from being reused by new ones
        self._reported = {id(m): m for m in messages}

    def _report_reply(
        self, *, text: str, thinking: str | None, calls: list[ToolRequest],
        stop_reason: str | None, usage: dict[str, Any],
    ) -> None:
        """Record the model's reply to the last request."""
        self._record("model_reply", {
            "model": self.model, "text": text, "thinking": thinking,
            "tool_calls": [{"id": c.id, "tool": c.tool, "input": c.input} for c in calls],
            "stop_reason": stop_reason, "usage": usage,
            "latency_s": round(self._latency_s, 3),
        })

    def _learn_ratio(self, prompt_tokens: int, prompt: Any) -> None:
        chars = len(json.dumps(prompt, default=str))
        if prompt_tokens > 0 and chars > 0:
            self.chars_per_token = chars / prompt_tokens

    def _needs_trim(self, prompt_tokens: int) -> bool:
        return prompt_tokens >= self.trim_at * self.context_limit

    def _units_to_drop(
        self, units: list[Any], fixed: Any, target_share: float, *, overflowed: bool = False
    ) -> int:
        """How many of the oldest `units` (groups of messages that go together) to drop so
        that the prompt (`fixed` plus the rest) fits `target_share` of the context window.
        After the server said the prompt overflowed (so the estimate was wrong), at least
        half of them go. The newest unit is always kept."""
        budget = target_share * self.context_limit * self.chars_per_token
        sizes = [len(json.dumps(unit, default=str)) for unit in units]
        total = len(json.dumps(fixed, default=str)) + sum(sizes)
        drop = min(len(units) // 2, len(units) - 1) if overflowed and units else 0
        total -= sum(sizes[:drop])
        while drop < len(units) - 1 and total > budget:
            total -= sizes[drop]
            drop += 1
        return drop

    def trim_notice(self, dropped: int) -> str:
        """The text that replaces dropped messages, with the notepad shown again."""
        text = (
            f"[{dropped} earlier messages were removed to fit the context window. "
            "The task's instructions are above; the most recent messages follow.]"
        )
        if self.notepad:
            text += f"\n\nYour notepad:\n{self.notepad}"
        return text


def is_context_overflow(message: str) -> bool:
    """True when an API error says the prompt is longer than the model's context window."""
    lowered = message.lower()
    return any(
        phrase in lowered
        for phrase in ("prompt is too long", "context length", "context window",
                       "maximum context", "too many tokens", "context_length_exceeded")
    )
