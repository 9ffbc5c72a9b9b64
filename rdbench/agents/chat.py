"""The loop every chat-model agent shares, whatever the provider (claude, openai) and the
scaffold (agents/*.py): `ChatAgent(provider, scaffold)`.

A model may call several tools in one reply. The env runs one tool per step, so the calls of
a reply are handed out one per `act`; once all are answered, their results go back to the
model together in the next request. Calls of the scaffold's own tools (a notepad) are
answered by the scaffold at once, with no env step, and recorded as `scaffold` events.

Before each request the scaffold chooses the turns the model sees (`Scaffold.request`); when
the server says the prompt is too long, the scaffold shrinks the history (`overflowed`).
Failed requests are retried here and only here (retry.py); usage is counted and priced.

Every request and reply is reported to the episode's recorder (`TaskInfo.record`): a
`model_request` event with the system prompt (first request only) and, in the provider's
wire format, the turns that are new since the previous request, and a `model_reply` event
with the model's text, thinking, tool calls, stop reason, the call's usage and its latency.
The episode's seed seeds the agent's own randomness (the retry jitter) and is sent to the
model where the provider takes one.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from rdbench.agents import observed
from rdbench.agents.base import AgentError, TaskInfo, Usage
from rdbench.agents.chat_context import ChatContext, answer_open_calls
from rdbench.agents.conversation import (
    ContextOverflow,
    ModelReply,
    ModelRequest,
    Provider,
    ToolAnswer,
    ToolRequest,
    Turn,
)
from rdbench.agents.pricing import Price, find_price, price_table
from rdbench.agents.retry import RetryPolicy, with_retries
from rdbench.agents.scaffold import Scaffold, load_scaffold, turn_size

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
MAX_OVERFLOWS = 3  # times the scaffold may shrink the history for one request
MAX_REQUESTS_PER_ACT = 25  # replies in a row that call only the scaffold's own tools


class ChatAgent:
    """A chat model driving the env's tools: `provider` calls the model, `scaffold` (a
    Scaffold, or a spec such as "summary(at=0.7)"; None for plain) chooses what it sees."""

    name = "chat"

    def __init__(
        self, provider: Provider, scaffold: Scaffold | str | None = None, *,
        context_limit: int = 200_000, trim_at: float = 0.8, max_idle_replies: int = 3,
        system_prompt: str | None = None, price_file: str | None = None,
        retry: RetryPolicy | None = None,
    ):
        if context_limit < 1000:
            raise ValueError(f"Expected context_limit >= 1000 tokens, got {context_limit}")
        if not 0.1 <= trim_at < 1:
            raise ValueError(f"Expected trim_at between 0.1 and 1, got {trim_at}")
        self.provider = provider
        self.scaffold = scaffold if isinstance(scaffold, Scaffold) else load_scaffold(scaffold)
        self.context_limit = context_limit
        self.trim_at = trim_at
        self.max_idle_replies = max_idle_replies
        self.system_prompt = system_prompt or SYSTEM_PROMPT
        self.price: Price | None = find_price(provider.model, price_table(price_file))
        self.retry = retry or RetryPolicy()
        self.tools: list[dict[str, Any]] = []
        self.context: ChatContext | None = None
        self._usage = Usage()
        self._queue: deque[ToolRequest] = deque()
        self._answered: list[ToolAnswer] = []
        self._current: ToolRequest | None = None
        self._idle = 0
        self.seed = 0
        self.rng = random.Random(0)
        self._reported: dict[int, Turn] = {}
        self._system_reported = False
        self._latency_s = 0.0

    @property
    def model(self) -> str:
        """The model's name, as the provider sends it."""
        return self.provider.model

    def reset(self, info: TaskInfo, observation: str) -> None:
        """Start a new conversation: the env's tools and the scaffold's, the briefing."""
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
        self.seed = info.seed
        self.rng = random.Random(info.seed)
        self._reported = {}
        self._system_reported = False
        own = self.scaffold.tools()
        taken = {tool["name"] for tool in own}
        self.tools = [
            {"name": t["name"], "description": t["description"],
             "input_schema": t["input_schema"]}
            for t in info.tools if t["name"] not in taken
        ] + own
        self.context = ChatContext(self, info, observation)
        self.scaffold.start(self.context)

    def act(self, observation: str) -> dict[str, Any]:
        """The next env tool call: from the queue, or from a new request to the model."""
        context = self._started()
        if self._current is not None:
            self._answered.append(ToolAnswer(self._current, str(observation),
                                             observed.is_error(observation)))
            self._current = None
        requests = 0
        while True:
            while not self._queue:
                requests += 1
                if requests > MAX_REQUESTS_PER_ACT:
                    raise AgentError(
                        f"The model made {MAX_REQUESTS_PER_ACT} requests in a row without "
                        "calling an env tool (only the scaffold's own); stopping it")
                calls = self._next_calls()
                if calls:
                    self._idle = 0
                    self._queue.extend(calls)
                else:
                    self._idle += 1
                    if self._idle >= self.max_idle_replies:
                        log.warning("agent.idle_submit", replies=self._idle)
                        return {"tool": "submit", "input": {}}
            call = self._queue.popleft()
            if call.tool in context.scaffold_tools:
                self._answered.append(self._scaffold_answer(call, context))
                continue
            self._current = call
            return {"tool": call.tool, "input": call.input}

    def end(self, reason: str) -> str | None:
        """The episode ended (`reason`): the scaffold's last word, e.g. notes for the next
        episode of a relay. Calls the model made that were never run are answered as such
        first, so that the history is a valid conversation."""
        context = self._started()
        answers = list(self._answered)
        if self._current is not None:
            answers.append(ToolAnswer(self._current, f"(the episode ended, {reason}, before "
                                                     "this result was read)"))
        answers += [ToolAnswer(call, f"(not run: the episode ended, {reason})")
                    for call in self._queue]
        if answers:
            context.history.append(Turn.user("", answers))
        self._answered, self._current = [], None
        self._queue.clear()
        return self.scaffold.end(context, reason)

    def ask(self, instruction: str, turns: list[Turn]) -> str:
        """`ScaffoldContext.ask`: `turns` (open calls answered as not run), then
        `instruction` as a user turn; the reply's text. Sent with the episode's tools, so
        that the cached prompt is reused, but no call of the reply is run. ContextOverflow
        when it does not fit."""
        asked = [*answer_open_calls(turns), Turn.user(instruction)]
        reply = self.send(lambda: asked, self.tools, shrink=False)
        return reply.turn.text.strip()

    def usage(self) -> Usage:
        """Tokens, dollars and requests so far in this episode."""
        return self._usage

    def close(self) -> None:
        """Free the provider's HTTP client."""
        self.provider.close()

    # --- one request -------------------------------------------------------------------

    def _started(self) -> ChatContext:
        if self.context is None:
            raise AgentError(f"The {self.name} agent was asked to act before reset")
        return self.context

    def _scaffold_answer(self, call: ToolRequest, context: ChatContext) -> ToolAnswer:
        """A call of one of the scaffold's own tools, answered without an env step."""
        if not isinstance(call.input, dict):
            return ToolAnswer(call, f"Error: the input of {call.tool} must be a JSON object, "
                                    f"got {call.input!r}", is_error=True)
        text = self.scaffold.answer(call, context)
        context.note(call.tool, text, input=call.input)
        return ToolAnswer(call, text, is_error=text.startswith("Error:"))

    def _next_calls(self) -> list[ToolRequest]:
        """Send the answers (and a nudge after a reply without calls); the model's calls."""
        context = self._started()
        answers, self._answered = self._answered, []
        nudge = self._idle > 0 or (not answers and context.history[-1].role == "assistant")
        if answers or nudge:
            context.history.append(Turn.user(NUDGE if nudge else "", answers))
        reply = self.send(lambda: self.scaffold.request(context), self.tools)
        context.history.append(reply.turn)
        log.info("chat.reply", agent=self.name, stop_reason=reply.stop_reason,
                 tool_calls=len(reply.turn.calls), output_tokens=reply.tokens.output_tokens)
        return list(reply.turn.calls)

    def send(
        self, turns: Callable[[], list[Turn]], tools: list[dict[str, Any]], *,
        shrink: bool = True,
    ) -> ModelReply:
        """One request of `turns()` with `tools`: retried, recorded and charged. When the
        prompt is too long the scaffold shrinks the history and `turns()` is asked again;
        without `shrink` (an `ask`), ContextOverflow is raised to the caller."""
        context = self._started()
        for _ in range(MAX_OVERFLOWS + 1):
            request = ModelRequest(self.system_prompt, tools, list(turns()), self.seed)
            self._report_request(request.turns)
            try:
                reply = with_retries(
                    self._timed(request), policy=self.retry,
                    retryable=self.provider.retryable, retry_after=self.provider.retry_after,
                    usage=self._usage, what=getattr(self.provider, "what", self.model),
                    record=context.info.record, rng=self.rng,
                )
            except ContextOverflow as error:
                log.warning("chat.context_overflow", error=str(error)[:200])
                if not shrink:
                    raise
                if not self.scaffold.overflowed(context):
                    raise AgentError(
                        f"The conversation does not fit the context window even trimmed: "
                        f"{error}") from error
                continue
            self._account(request, reply)
            return reply
        raise AgentError("The conversation kept overflowing the context window after trimming")

    def _timed(self, request: ModelRequest) -> Any:
        """The provider's attempt at `request`, noting how long a successful one took (the
        reply's latency; failed attempts and the waits between them are not in it)."""

        def attempt() -> ModelReply:
            start = time.monotonic()
            reply = self.provider.complete(request)
            self._latency_s = time.monotonic() - start
            return reply

        return attempt

    def _account(self, request: ModelRequest, reply: ModelReply) -> None:
        """Charge the reply's tokens, learn the prompt's size, record the reply."""
        context = self._started()
        tokens = reply.tokens
        usage = self._charge(input_tokens=tokens.input_tokens,
                             output_tokens=tokens.output_tokens,
                             cache_read=tokens.cache_read_tokens,
                             cache_write=tokens.cache_write_tokens)
        context.last_prompt_tokens = tokens.prompt_tokens
        chars = len(request.system) + len(str(request.tools)) + sum(map(turn_size,
                                                                        request.turns))
        if tokens.prompt_tokens > 0:
            context.chars_per_token = chars / tokens.prompt_tokens
        turn = reply.turn
        context.info.record("model_reply", {
            "model": self.model, "text": turn.text, "thinking": turn.thinking,
            "tool_calls": [{"id": c.id, "tool": c.tool, "input": c.input} for c in turn.calls],
            "stop_reason": reply.stop_reason, "usage": usage,
            "latency_s": round(self._latency_s, 3),
        })

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
        if not (input_tokens or output_tokens or cache_read or cache_write):
            usage.extra["replies_without_usage"] = usage.extra.get("replies_without_usage",
                                                                   0) + 1
        return {"input_tokens": input_tokens, "output_tokens": output_tokens,
                "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
                "cost_usd": round(cost, 8)}

    def _report_request(self, turns: list[Turn]) -> None:
        """Record a request: the system prompt the first time, and, in the provider's wire
        format, the turns not in the previous request (after a trim, the rebuilt first
        turn; each request, a scaffold's fresh note such as the notepad)."""
        render = getattr(self.provider, "messages", None)
        new = [turn for turn in turns if id(turn) not in self._reported]
        fields: dict[str, Any] = {
            "model": self.model,
            "messages": render(new) if render else [_plain(turn) for turn in new],
        }
        if not self._system_reported:
            fields["system"] = self.system_prompt
            self._system_reported = True
        self._started().info.record("model_request", fields)
        # holding the turns keeps their ids from being reused by new ones
        self._reported = {id(turn): turn for turn in turns}


def _plain(turn: Turn) -> dict[str, Any]:
    """A turn as a record holds it when the provider has no wire format of its own."""
    return {"role": turn.role, "content": turn.text,
            **({"answers": [a.text for a in turn.answers]} if turn.answers else {}),
            **({"calls": [c.tool for c in turn.calls]} if turn.calls else {})}


def is_context_overflow(message: str) -> bool:
    """True when an API error says the prompt is longer than the model's context window."""
    lowered = message.lower()
    return any(
        phrase in lowered
        for phrase in ("prompt is too long", "context length", "context window",
                       "maximum context", "too many tokens", "context_length_exceeded")
    )
