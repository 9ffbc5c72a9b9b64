"""openai: any OpenAI-compatible chat-completions server with tool calls (vLLM, llama.cpp's
server, ollama, OpenAI itself), named by `--base-url`.

It speaks plain HTTP through httpx rather than the `openai` SDK: the servers it targets
differ in small ways (arguments given as objects instead of JSON text, missing ids or usage,
extra fields), which are easier to tolerate when reading the JSON directly; it keeps the
retry layer single (retry.py) with no SDK retries to turn off; and it adds no dependency,
since httpx is already installed. Accounting is the claude adapter's: tokens (cached prompt
tokens counted as cache reads), dollars from the price table, retries and their waits.

Each request, reply and retry is reported to the episode's recorder (chat.py); a reply's
`reasoning_content` (vLLM, DeepSeek) or `reasoning` (ollama) is recorded as its thinking.
The episode's seed is sent as the request's `seed` (`send_seed=False` leaves it out, for a
server that refuses the field).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from typing import Any

import httpx
import structlog

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

OPENAI_URL = "https://api.openai.com/v1"
MAX_OVERFLOW_TRIMS = 3


class ServerError(Exception):
    """An HTTP error reply of the chat server."""

    def __init__(self, status: int, message: str, headers: httpx.Headers):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.headers = headers


@agent("openai")
class OpenAICompatAgent(ChatAgent):
    """Any OpenAI-compatible chat-completions server with tool calls (--base-url, --model).

    The episode's seed (`TaskInfo.seed`) goes to the server as the request's `seed`, which
    OpenAI, vLLM, llama.cpp and ollama take; `send_seed=False` leaves it out.
    """

    name = "openai"

    def __init__(
        self,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int | None = 4096,
        temperature: float | None = None,
        context_limit: int = 128_000,
        trim_at: float = 0.8,
        system_prompt: str | None = None,
        max_retries: int = 8,
        retry_base_delay: float = 1.0,
        retry_max_delay: float = 60.0,
        request_timeout: float = 600.0,
        max_idle_replies: int = 3,
        price_file: str | None = None,
        send_seed: bool = True,
    ):
        key = os.environ.get(api_key_env, "").strip()
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not url:
            if not key:
                raise AgentConfigError(
                    "The openai agent needs a server: give --base-url (vLLM: "
                    "http://localhost:8000/v1, llama.cpp: http://localhost:8080/v1, ollama: "
                    f"http://localhost:11434/v1), or set {api_key_env} to use {OPENAI_URL}"
                )
            url = OPENAI_URL
        if url == OPENAI_URL and not key:
            raise AgentConfigError(f"{api_key_env} is not set: {OPENAI_URL} needs an API key")
        if not model:
            raise AgentConfigError(
                "The openai agent needs --model: the name the server serves the model under "
                f"(see GET {url}/models)"
            )
        super().__init__(
            model=model, context_limit=context_limit, trim_at=trim_at,
            max_idle_replies=max_idle_replies, system_prompt=system_prompt,
            price_file=price_file,
        )
        self.base_url = url
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.send_seed = send_seed
        self.retry = RetryPolicy(max_retries, retry_base_delay, retry_max_delay)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=request_timeout)
        self.tools: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.briefing = ""
        self._pending_trim = False
        self._call_count = 0

    def _start(self, info: TaskInfo, observation: str) -> None:
        self.tools = [
            {"type": "function", "function": {"name": t["name"], "description": t["description"],
                                              "parameters": t["input_schema"]}}
            for t in info.tools
        ]
        self.briefing = observation
        self.messages = [{"role": "system", "content": self.system_prompt},
                         {"role": "user", "content": observation}]
        self._pending_trim = False

    def _turn(self, answered: list[tuple[ToolRequest, str]], *, nudge: bool) -> list[ToolRequest]:
        for call, text in answered:
            self.messages.append({"role": "tool", "tool_call_id": call.id,
                                  "content": str(text) or "(no output)"})
        if nudge or (not answered and self.messages[-1]["role"] == "assistant"):
            self.messages.append({"role": "user", "content": NUDGE})
        message, finish_reason, usage = self._request()
        calls = [self._tool_request(raw) for raw in message.get("tool_calls") or []]
        reply: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if calls:
            reply["tool_calls"] = [
                {"id": call.id, "type": "function",
                 "function": {"name": call.tool, "arguments": _arguments_text(call.input)}}
                for call in calls
            ]
        self.messages.append(reply)
        thinking = message.get("reasoning_content") or message.get("reasoning")
        self._report_reply(
            text=str(message.get("content") or ""),
            thinking=str(thinking) if thinking else None, calls=calls,
            stop_reason=finish_reason, usage=usage,
        )
        log.info("openai.reply", tool_calls=len(calls))
        return calls

    def _tool_request(self, raw: dict[str, Any]) -> ToolRequest:
        self._call_count += 1
        function = raw.get("function") or {}
        arguments = function.get("arguments")
        parsed: Any = arguments
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                parsed = arguments  # the env answers with an error the model can read
        elif arguments is None:
            parsed = {}
        return ToolRequest(str(raw.get("id") or f"call_{self._call_count}"),
                           str(function.get("name", "")), parsed)

    def _request(self) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
        """The reply's message, its finish reason, and the call's usage."""
        for _ in range(MAX_OVERFLOW_TRIMS + 1):
            if self._pending_trim:
                self._pending_trim = False
                self._trim(TRIM_TARGET)
            payload = self._payload()
            self._report_request(self.messages[1:])  # the system message is recorded apart
            try:
                body = with_retries(
                    self._timed(functools.partial(self._post, payload)), policy=self.retry,
                    retryable=_retryable, retry_after=_retry_after, usage=self._usage,
                    what=f"chat server at {self.base_url}", record=self._record, rng=self.rng,
                )
            except ServerError as error:
                if not (error.status in (400, 413) and is_context_overflow(str(error))):
                    raise AgentError(f"The chat server rejected the request: {error}") from error
                log.warning("openai.context_overflow", error=str(error)[:200])
                if not self._trim(TRIM_AFTER_OVERFLOW, overflowed=True):
                    raise AgentError(
                        f"The conversation does not fit the context window even trimmed: {error}"
                    ) from error
                continue
            return self._read(body)
        raise AgentError("The conversation kept overflowing the context window after trimming")

    def _payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": self.messages}
        if self.tools:
            payload["tools"] = self.tools
            payload["tool_choice"] = "auto"
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.send_seed:
            payload["seed"] = self.seed
        return payload

    def _post(self, payload: dict[str, Any]) -> Any:
        response = self.client.post("/chat/completions", json=payload)
        if response.status_code >= 400:
            raise ServerError(response.status_code, _error_message(response), response.headers)
        try:
            return response.json()
        except ValueError as error:
            raise AgentError(
                f"The chat server at {self.base_url} replied with something that is not JSON: "
                f"{response.text[:200]!r}"
            ) from error

    def _read(self, body: Any) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as error:
            raise AgentError(
                f"The chat server replied without choices[0].message: {str(body)[:300]}"
            ) from error
        usage = body.get("usage") or {}
        if not usage:
            self._usage.extra["replies_without_usage"] = (
                self._usage.extra.get("replies_without_usage", 0) + 1
            )
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        charged = self._charge(input_tokens=prompt - cached, output_tokens=completion,
                               cache_read=cached, cache_write=0)
        self._learn_ratio(prompt, [self.tools, self.messages])
        if self._needs_trim(prompt + completion):
            self._pending_trim = True
        finish = choice.get("finish_reason")
        return message, str(finish) if finish is not None else None, charged

    def _trim(self, share: float, *, overflowed: bool = False) -> bool:
        """Drop the oldest turns (an assistant message and the tool results and nudges after
        it) so the prompt fits `share` of the window; False when nothing can be dropped."""
        starts = [i for i, m in enumerate(self.messages) if m["role"] == "assistant" and i >= 2]
        bounds = [*starts, len(self.messages)]
        units = [self.messages[a:b] for a, b in itertools.pairwise(bounds)]
        drop = self._units_to_drop(units, [*self.messages[:2], self.tools], share,
                                   overflowed=overflowed)
        if drop == 0:
            return False
        self.trims += 1
        dropped = self._usage.extra.get("messages_dropped", 0) + sum(map(len, units[:drop]))
        self._usage.extra.update(trims=self.trims, messages_dropped=dropped)
        kept = [message for unit in units[drop:] for message in unit]
        briefing = {"role": "user",
                    "content": f"{self.briefing}\n\n{self.trim_notice(dropped)}"}
        self.messages = [self.messages[0], briefing, *kept]
        log.info("openai.trim", kept_messages=len(kept))
        return True

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:500]
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error or response.text)[:500]


def _retryable(error: Exception) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, ServerError) and error.status in RETRY_STATUSES


def _retry_after(error: Exception) -> float | None:
    return parse_retry_after(error.headers) if isinstance(error, ServerError) else None
