"""The channel a person's sandbox is given to talk to the runner: `rdbench-score`,
`rdbench-submit`, `rdbench-status` and `rdbench-help` inside, a Unix socket on the host.

Only an episode of a person (an agent with `uses_terminal`) has one. Its host folder
(`/var/tmp/rdbench-channel-<pid>-<random>`, removed with the episode, or by the reaper once
the runner is gone) is shown read-only at CHANNEL_DIR inside (SandboxConfig.channel_dir): the
socket, which only the agent user (and root) may connect to, and the commands in `bin/`
(rdbench/human_command.py, one script under four names), which the person's shell has on its
PATH. In any other episode the path does not exist.

The protocol is one JSON object a connection, one line of at most MAX_REQUEST_BYTES:
`{"op": "score"}`, and one JSON line back: `{"ok": true, "text": ...}` or `{"ok": false,
"error": ...}`. Only the operations in OPERATIONS exist; anything else (another op, another
field, a request too large, not JSON) gets an error reply and changes nothing. What each
operation does is the handler's (rdbench/human_desk.py): this module only serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from rdbench.sandbox import hostdirs
from rdbench.sandbox.base import AGENT_UID, CHANNEL_DIR

log = structlog.get_logger()

SOCKET_NAME = "channel.sock"
BIN = "bin"
COMMANDS = ("rdbench-score", "rdbench-submit", "rdbench-status", "rdbench-help")
OPERATIONS = ("score", "submit", "status", "help")
MAX_REQUEST_BYTES = 4096
MAX_CONNECTIONS = 4  # at once; more are refused (a person runs one command at a time)
READ_TIMEOUT_S = 10.0  # for the request's line; the reply may take a grading's time
DRAIN_S = 1.0  # after the reply, for the rest of what the client sent
MAX_DRAIN_BYTES = 1024 * 1024
COMMAND_SOURCE = Path(__file__).with_name("human_command.py")

Reply = dict[str, Any]
Handler = Callable[["Request"], Reply]


class ChannelRequestError(ValueError):
    """A request the channel refuses; its message is the error reply."""


@dataclass(frozen=True)
class Request:
    """One well-formed request: an operation of OPERATIONS."""

    op: str


def parse_request(data: bytes) -> Request:
    """The request in `data` (one JSON line), or ChannelRequestError saying what is wrong."""
    if len(data) > MAX_REQUEST_BYTES:
        raise ChannelRequestError(f"The request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ChannelRequestError(f"The request is not one JSON object: {error}") from error
    if not isinstance(message, dict):
        raise ChannelRequestError(f"The request is not a JSON object: {type(message).__name__}")
    op = message.get("op")
    if op not in OPERATIONS:
        raise ChannelRequestError(f"Unknown operation {op!r}; the channel has only "
                                  f"{', '.join(OPERATIONS)}")  # fmt: skip
    extra = sorted(set(message) - {"op"})
    if extra:
        raise ChannelRequestError(f"The request has fields the channel does not take: "
                                  f"{', '.join(extra)}; send only {{\"op\": ...}}")  # fmt: skip
    return Request(op=op)


def error_reply(message: str) -> Reply:
    """The reply to a refused or failed request."""
    return {"ok": False, "error": message}


class ChannelServer:
    """The channel of one episode: its host folder, socket and commands, served from a thread
    until `close()` (idempotent), which removes the folder."""

    def __init__(self, handler: Handler):
        self._handler = handler
        self.folder = hostdirs.make_dir("channel")
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        try:
            self._install_commands()
            self._listener = self._listen()
        except BaseException:
            hostdirs.remove(self.folder)
            raise
        self._thread = threading.Thread(target=self._serve, name="rdbench-channel", daemon=True)
        self._thread.start()
        log.info("channel.open", folder=str(self.folder))

    @property
    def socket_path(self) -> Path:
        """The socket on the host (CHANNEL_DIR/SOCKET_NAME inside)."""
        return self.folder / SOCKET_NAME

    def _install_commands(self) -> None:
        """bin/ with the in-sandbox commands, root's and read-only; the folder itself
        traversable by the agent user (its socket is the agent's alone)."""
        os.chmod(self.folder, 0o755)
        bin_dir = self.folder / BIN
        bin_dir.mkdir(mode=0o755)
        for name in COMMANDS:
            target = bin_dir / name
            shutil.copyfile(COMMAND_SOURCE, target)
            os.chmod(target, 0o755)

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o600)
            if os.geteuid() == 0:
                os.chown(self.socket_path, AGENT_UID, -1)
            listener.listen(MAX_CONNECTIONS)
            listener.settimeout(0.5)  # to see close()
        except BaseException:
            listener.close()
            raise
        return listener

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            if not self._slots.acquire(blocking=False):
                self._answer(connection, error_reply("The channel is busy with other "
                                                     "commands; try again in a moment"))
                continue
            threading.Thread(target=self._serve_one, args=(connection,),
                             name="rdbench-channel-request", daemon=True).start()  # fmt: skip

    def _serve_one(self, connection: socket.socket) -> None:
        try:
            reply = self._reply_to(_read_line(connection))
            self._answer(connection, reply)
        finally:
            self._slots.release()

    def _reply_to(self, data: bytes) -> Reply:
        try:
            request = parse_request(data)
        except ChannelRequestError as error:
            log.info("channel.refused", error=str(error))
            return error_reply(str(error))
        if self._closed.is_set():
            return error_reply("The episode is over")
        log.info("channel.request", op=request.op)
        try:
            return self._handler(request)
        except Exception as error:  # a failing operation is a reply, never the runner's end
            log.warning("channel.failed", op=request.op, error=f"{type(error).__name__}: {error}")
            return error_reply(f"rdbench could not {request.op}: {type(error).__name__}: {error}")

    def _answer(self, connection: socket.socket, reply: Reply) -> None:
        """Send `reply`, then drop what the client sent beyond its request (a little at
        most), so that closing does not reset the connection before it read the reply."""
        with contextlib.suppress(OSError), connection:
            connection.settimeout(READ_TIMEOUT_S)
            connection.sendall(json.dumps(reply).encode() + b"\n")
            connection.shutdown(socket.SHUT_WR)
            connection.settimeout(DRAIN_S)
            dropped = 0
            while dropped < MAX_DRAIN_BYTES and (chunk := connection.recv(65536)):
                dropped += len(chunk)

    def close(self) -> None:
        """Stop serving and remove the folder (the socket and commands with it)."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept in progress
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5.0)
        hostdirs.remove(self.folder)
        log.info("channel.closed", folder=str(self.folder))


def _read_line(connection: socket.socket) -> bytes:
    """The request's line (without its newline), read until a newline or the end of the
    stream; at most MAX_REQUEST_BYTES + 1 bytes (more is refused by parse_request)."""
    connection.settimeout(READ_TIMEOUT_S)
    data = b""
    try:
        while len(data) <= MAX_REQUEST_BYTES and b"\n" not in data:
            chunk = connection.recv(MAX_REQUEST_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:  # a timeout or a reset: what came so far is judged
        pass
    return data.split(b"\n", 1)[0] if b"\n" in data else data


def command_path() -> str:
    """The folder of the commands inside the sandbox, for the person's PATH."""
    return f"{CHANNEL_DIR}/{BIN}"
