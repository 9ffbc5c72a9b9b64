"""openai: any OpenAI-compatible chat-completions server with tool calls (vLLM, llama.cpp's
server, ollama, OpenAI itself), named by `--base-url`.

It speaks plain HTTP through httpx rather than the `openai` SDK: the servers it targets
differ in small ways (arguments given as objects instead of JSON text, missing ids or usage,
extra fields), which are easier to tolerate when reading the JSON directly; it keeps the
retry layer single (retry.py) with no SDK retries to turn off; and it adds no dependency,
since httpx is already installed. Accounting is the claude adapter's: tokens (cached prompt
tokens counted as cache reads), dollars from the price table, retries and their waits.

`OpenAIProvider` turns the neutral conversation (rdbench.agents.conversation) into chat
messages (an assistant's `tool_calls`, each answer a `tool` message) and the reply back; a
context-length refusal is a ContextOverflow. The `openai` agent is the shared chat loop
(chat.py) with this provider and a scaffold (agents/*.py).

Each request, reply and retry is reported to the episode's recorder (chat.py); a reply's
`reasoning_content` (vLLM, DeepSeek) or `reasoning` (ollama) is recorded as its thinking.
The episode's seed is sent as the request's `seed` (`send_seed=False` leaves it out, for a
server that refuses the field).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

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

OPENAI_URL = "https://api.openai.com/v1"


class ServerError(Exception):
    """An HTTP error reply of the chat server."""

    def __init__(self, status: int, message: str, headers: httpx.Headers):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.headers = headers


class OpenAIProvider:
    """An OpenAI-compatible chat-completions server as a Provider: one attempt per
    `complete`."""

    def __init__(
        self, *, url: str, key: str, model: str, max_tokens: int | None,
        temperature: float | None, send_seed: bool, request_timeout: float,
    ):
        self.base_url = url
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.send_seed = send_seed
        self.what = f"chat server at {url}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=request_timeout)
        self._call_count = 0

    def complete(self, request: ModelRequest) -> ModelReply:
        """One chat-completions call; ContextOverflow or AgentError for a refusal no retry
        mends, the transport's own error (or ServerError) for one worth retrying."""
        response = self.client.post("/chat/completions", json=self.payload(request))
        if response.status_code >= 400:
            error = ServerError(response.status_code, _error_message(response),
                                response.headers)
            if error.status in RETRY_STATUSES:
                raise error
            if error.status in (400, 413) and is_context_overflow(str(error)):
                raise ContextOverflow(f"The chat server: {error}") from error
            raise AgentError(f"The chat server rejected the request: {error}") from error
        try:
            body = response.json()
        except ValueError as error:
            raise AgentError(
                f"The chat server at {self.base_url} replied with something that is not JSON: "
                f"{response.text[:200]!r}"
            ) from error
        return self._read(body)

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        """The chat-completions request for `request`."""
        messages = [{"role": "system", "content": request.system},
                    *_merged(self.messages(request.turns))]
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if request.tools:
            payload["tools"] = [
                {"type": "function", "function": {"name": t["name"],
                                                  "description": t["description"],
                                                  "parameters": t["input_schema"]}}
                for t in request.tools
            ]
            payload["tool_choice"] = "auto"
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.send_seed:
            payload["seed"] = request.seed
        return payload

    def messages(self, turns: list[Turn]) -> list[dict[str, Any]]:
        """`turns` as chat messages (a user turn's answers are `tool` messages, then its
        text), without the system message."""
        messages: list[dict[str, Any]] = []
        for turn in turns:
            if turn.role == "assistant":
                reply: dict[str, Any] = {"role": "assistant", "content": turn.text}
                if turn.calls:
                    reply["tool_calls"] = [
                        {"id": call.id, "type": "function",
                         "function": {"name": call.tool,
                                      "arguments": _arguments_text(call.input)}}
                        for call in turn.calls
                    ]
                messages.append(reply)
                continue
            messages += [{"role": "tool", "tool_call_id": answer.call.id,
                          "content": answer.text or "(no output)"} for answer in turn.answers]
            if turn.text or not turn.answers:
                messages.append({"role": "user", "content": turn.text or "(nothing)"})
        return messages

    def _read(self, body: Any) -> ModelReply:
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as error:
            raise AgentError(
                f"The chat server replied without choices[0].message: {str(body)[:300]}"
            ) from error
        usage = body.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        tokens = TokenCount(input_tokens=prompt - cached,
                            output_tokens=int(usage.get("completion_tokens") or 0),
                            cache_read_tokens=cached)
        thinking = message.get("reasoning_content") or message.get("reasoning")
        turn = Turn("assistant", text=str(message.get("content") or ""),
                    calls=[self._tool_request(raw) for raw in message.get("tool_calls") or []],
                    thinking=str(thinking) if thinking else None)
        finish = choice.get("finish_reason")
        return ModelReply(turn, str(finish) if finish is not None else None, tokens)

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

    def retryable(self, error: Exception) -> bool:
        """A dropped connection, 408, 409, 429, 5xx, 529."""
        if isinstance(error, httpx.TransportError):
            return True
        return isinstance(error, ServerError) and error.status in RETRY_STATUSES

    def retry_after(self, error: Exception) -> float | None:
        """The server's retry-after, if it sent one."""
        return parse_retry_after(error.headers) if isinstance(error, ServerError) else None

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


@agent("openai")
class OpenAICompatAgent(ChatAgent):
    """Any OpenAI-compatible chat-completions server with tool calls (--base-url, --model).

    The episode's seed (`TaskInfo.seed`) goes to the server as the request's `seed`, which
    OpenAI, vLLM, llama.cpp and ollama take; `send_seed=False` leaves it out. `scaffold`
    chooses what the model sees and remembers (agents/*.py; default plain).
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
        scaffold: str | None = None,
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
        provider = OpenAIProvider(url=url, key=key, model=model, max_tokens=max_tokens,
                                  temperature=temperature, send_seed=send_seed,
                                  request_timeout=request_timeout)
        super().__init__(
            provider, scaffold, context_limit=context_limit, trim_at=trim_at,
            max_idle_replies=max_idle_replies, system_prompt=system_prompt,
            price_file=price_file,
            retry=RetryPolicy(max_retries, retry_base_delay, retry_max_delay),
        )
        self.base_url = url


def _merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with consecutive user messages joined into one (some chat templates
    refuse two in a row): a scaffold's note after a nudge shares its message."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and message["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {"role": "user",
                          "content": f"{merged[-1]['content']}\n\n{message['content']}"}
        else:
            merged.append(message)
    return merged


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
