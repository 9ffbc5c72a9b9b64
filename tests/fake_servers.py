"""Fake model APIs on 127.0.0.1 for the adapters' tests: real HTTP, scripted replies.

A `FakeServer` answers POST requests in order from a script of `Reply`s (or functions of the
request that make one) and records every request, so a test can check what the real SDK
sent. `anthropic_message` and `chat_completion` build the bodies of the two APIs' replies.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted HTTP response."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


Script = Reply | Callable[[dict[str, Any]], Reply]


class FakeServer:
    """A scripted JSON API in a background thread, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.script: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, *replies: Script) -> None:
        """Append replies to the script."""
        self.script.extend(replies)

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if not self.script:
                return Reply({"error": {"type": "invalid_request_error",
                                        "message": "fake server: no scripted reply left"}}, 400)
            item = self.script.popleft()
        return item(body) if callable(item) else item

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(
                        Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                reply = server._next(body)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler

    def start(self) -> FakeServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fake_server() -> Iterator[FakeServer]:
    """A started FakeServer, stopped at the end."""
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


# --- Anthropic Messages API -----------------------------------------------------------

def tool_use(name: str, tool_input: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tool_use content block."""
    return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": name,
            "input": tool_input or {}}


def text(content: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": content}


def anthropic_message(
    *blocks: dict[str, Any], input_tokens: int = 100, output_tokens: int = 20,
    cache_read: int = 0, cache_write: int = 0, stop_reason: str | None = None,
) -> Reply:
    """A Messages API reply holding `blocks` and reporting this usage."""
    has_tool = any(block["type"] == "tool_use" for block in blocks)
    return Reply({
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": list(blocks),
        "stop_reason": stop_reason or ("tool_use" if has_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_read_input_tokens": cache_read,
                  "cache_creation_input_tokens": cache_write},
    })


def thinking_reply(
    thought: str, *blocks: dict[str, Any], **usage: int
) -> Callable[[dict[str, Any]], Reply]:
    """A Messages API reply that, as the real API does, starts with a thinking block holding
    `thought` when the request enabled extended thinking, and has only `blocks` otherwise."""

    def reply(request: dict[str, Any]) -> Reply:
        thinking = request.get("thinking") or {}
        if thinking.get("type") in ("enabled", "adaptive"):
            block = {"type": "thinking", "thinking": thought,
                     "signature": f"sig_{uuid.uuid4().hex[:8]}"}
            return anthropic_message(block, *blocks, **usage)
        return anthropic_message(*blocks, **usage)

    return reply


def anthropic_error(status: int, kind: str, message: str, **headers: str) -> Reply:
    """A Messages API error reply (429 rate_limit_error, 529 overloaded_error, ...)."""
    return Reply({"type": "error", "error": {"type": kind, "message": message}}, status,
                 {k.replace("_", "-"): v for k, v in headers.items()})


# --- OpenAI chat completions ----------------------------------------------------------

def function_call(name: str, arguments: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """A tool call of a chat completion (arguments as JSON text, as the API sends them)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
            "function": {"name": name, "arguments": args}}


def chat_completion(
    *tool_calls: dict[str, Any], content: str | None = None, prompt_tokens: int = 100,
    completion_tokens: int = 20, cached_tokens: int | None = None,
) -> Reply:
    """A chat-completions reply with these tool calls and this usage."""
    usage: dict[str, Any] = {"prompt_tokens": prompt_tokens,
                             "completion_tokens": completion_tokens,
                             "total_tokens": prompt_tokens + completion_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return Reply({
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": 0,
        "model": "local-model",
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": usage,
    })


def openai_error(status: int, message: str, **headers: str) -> Reply:
    """A chat-completions error reply."""
    return Reply({"error": {"message": message, "type": "error", "code": None}}, status,
                 {k.replace("_", "-"): v for k, v in headers.items()})
