"""A person's terminal joined to a terminal inside a sandbox, until the session ends.

`run_session` puts the person's terminal in raw mode (every key, Ctrl-C and Ctrl-Z among
them, goes to the sandbox as a byte: the runner never sees a SIGINT from it), copies the
person's keys to the sandbox's terminal and its output to the person's screen, follows the
person's terminal size, and restores the terminal however the session ends. The session ends
when the program in the sandbox ends (the shell exited), when the working time is up, or
when the person's terminal goes away (end of input).

Every output chunk passes through `on_output(seconds_since_start, chunk)` and every typed
chunk through `on_input`: the place a recorder (an asciinema cast, say) tees the session. A
hook that raises is logged and dropped; the session goes on.

The size is followed by looking at the person's terminal at least every POLL_S seconds, and
at once on SIGWINCH where the session runs in the main thread (only the main thread may take
a signal handler; a run plays its episodes in worker threads).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import structlog

from rdbench.sandbox.terminal import Terminal, pty_size

log = structlog.get_logger()

POLL_S = 0.25
TYPIST_JOIN_S = 5.0
CHUNK = 65536
SessionHook = Callable[[float, bytes], None]
"""Called with (seconds since the session started, bytes) for each chunk of a stream."""
Ending = Literal["exit", "time", "closed"]


@dataclass(frozen=True)
class SessionEnd:
    """How a terminal session ended: `exit` (the program in the sandbox ended, with
    `exit_code`), `time` (the working time was up: the program was ended) or `closed` (the
    person's terminal gave end of input: the program was ended); and how long it lasted."""

    ended: Ending
    exit_code: int | None
    seconds: float


def run_session(
    terminal: Terminal,
    *,
    time_left: Callable[[], float],
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    on_output: SessionHook | None = None,
    on_input: SessionHook | None = None,
) -> SessionEnd:
    """Join the person's terminal (`stdin_fd`, `stdout_fd`) to `terminal` until the session
    ends (see the module's docstring); the terminal is closed when it returns."""
    started = time.monotonic()
    ended: Ending = "exit"
    size = _size_of(stdin_fd, stdout_fd)
    if size is not None:
        terminal.resize(*size)
    typist = _Typist(terminal)
    typist.start()
    try:
        with _raw(stdin_fd), _woken_on_resize() as wake:
            watched = [terminal.fileno(), stdin_fd, *([wake] if wake is not None else [])]
            while True:
                left = time_left()
                if left <= 0:
                    ended = "time"
                    break
                ready, _, _ = select.select(watched, [], [], min(POLL_S, left))
                if not ready and terminal.wait(timeout=0) is not None:
                    break  # ended, though something it left holds its terminal open
                if terminal.fileno() in ready:
                    data = terminal.read(CHUNK)
                    if not data:
                        break
                    _write_all(stdout_fd, data)
                    on_output = _told(on_output, time.monotonic() - started, data)
                if stdin_fd in ready:
                    typed = _read(stdin_fd)
                    if not typed:
                        ended = "closed"
                        break
                    typist.type(typed)
                    on_input = _told(on_input, time.monotonic() - started, typed)
                if wake is not None and wake in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake, 64)
                now = _size_of(stdin_fd, stdout_fd)
                if now is not None and now != size:
                    size = now
                    terminal.resize(*size)
        code = terminal.wait(timeout=0 if ended != "exit" else 5)
    finally:
        typist.stop()
        terminal.close()  # which ends a write the program would never have taken
        typist.join(TYPIST_JOIN_S)
    seconds = round(time.monotonic() - started, 3)
    log.info("terminal.session_end", ended=ended, exit_code=code, seconds=seconds)
    return SessionEnd(ended=ended, exit_code=code, seconds=seconds)


class _Typist(threading.Thread):
    """Types the person's keys into the terminal in order, from its own thread: a long paste
    that the program takes slowly (or not at all while its own output waits to be read)
    never stops the session from reading that output."""

    def __init__(self, terminal: Terminal):
        super().__init__(name="rdbench-terminal-typist", daemon=True)
        self._terminal = terminal
        self._keys: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def type(self, keys: bytes) -> None:
        """Queue `keys` to be typed after those queued before."""
        self._keys.put(keys)

    def stop(self) -> None:
        """Type nothing more once what is queued is typed."""
        self._keys.put(None)

    def run(self) -> None:
        while (keys := self._keys.get()) is not None:
            self._terminal.write(keys)


def _told(hook: SessionHook | None, seconds: float, data: bytes) -> SessionHook | None:
    """Call `hook` with a chunk; the hook, or None from now on once it failed (a failing
    recorder is logged and dropped: it never ends the person's session)."""
    if hook is None:
        return None
    try:
        hook(seconds, data)
    except Exception as error:
        log.warning("terminal.hook_failed", error=f"{type(error).__name__}: {error}")
        return None
    return hook


def _size_of(*fds: int) -> tuple[int, int] | None:
    """The size of the first of `fds` that is a terminal with a size."""
    for fd in fds:
        size = pty_size(fd)
        if size is not None:
            return size
    return None


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, CHUNK)
    except OSError:  # EIO: the person's terminal hung up
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], POLL_S)
        except OSError:  # the person's terminal is gone: nobody sees the output
            return


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """`fd` in raw mode for the block (nothing when it is no terminal), its settings put
    back after, whatever happened."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _woken_on_resize() -> Iterator[int | None]:
    """In the main thread: a descriptor that becomes readable on SIGWINCH (the previous
    handler is put back after the block). Elsewhere None: the size is then polled."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)

    def wake(signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_end, b"w")

    previous = signal.signal(signal.SIGWINCH, wake)
    try:
        yield read_end
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(read_end)
        os.close(write_end)
