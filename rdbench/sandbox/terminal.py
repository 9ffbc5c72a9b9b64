"""An interactive terminal inside a sandbox: a shell with a pseudo-terminal, for a person.

A backend that can give one has an `open_terminal` method on its sandbox class (an optional
capability of the Sandbox protocol); `open_terminal(sandbox, ...)` below calls it, or says
that the backend has none. The program runs as an agent's commands do (the same user, walls
and limits), with a terminal of its own: editors, REPLs and job control work, and Ctrl-C
(the byte 0x03 written to it) interrupts the program in the foreground of that terminal,
never the caller.

Two shapes carry the bytes, both behind the one `Terminal` protocol:
- `SocketTerminal`: a stream socket (Docker's exec with a TTY, hijacked from the engine's API).
- `PtyTerminal`: the host end of a pseudo-terminal whose other end the program holds (bwrap:
  the program joins the sandbox's namespaces and cgroup as its commands do).

Whoever reads a terminal's output (rdbench/agents/terminal_session.py) is the one place
every byte the person sees passes through: a recorder tees it there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import structlog

from rdbench.sandbox.base import AGENT_HOME, AGENT_USER, SandboxError

log = structlog.get_logger()

DEFAULT_SIZE = (24, 80)  # rows, columns
DEFAULT_TERM = "xterm-256color"
WAIT_POLL_S = 0.05
PTMX_DEVICE = (5, 2)  # major, minor of /dev/ptmx (and of a devpts instance's own ptmx)
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): lock or unlock a pseudo-terminal's slave
TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the slave of a master (Linux 4.13)


class TerminalUnsupported(SandboxError):
    """The sandbox's backend cannot give an interactive terminal."""


@runtime_checkable
class Terminal(Protocol):
    """A program running inside a sandbox with a terminal: bytes in, bytes out, a size."""

    def fileno(self) -> int:
        """A descriptor that is readable when output (or the end of it) is waiting, for
        select()."""
        ...

    def read(self, size: int = 65536) -> bytes:
        """Up to `size` bytes the program wrote to its terminal; b"" once it has ended and
        its output is drained."""
        ...

    def write(self, data: bytes) -> None:
        """Type `data` into the terminal (keys, as a person's terminal sends them)."""
        ...

    def resize(self, rows: int, cols: int) -> None:
        """Give the terminal a new size (the program gets SIGWINCH)."""
        ...

    def wait(self, timeout: float | None = None) -> int | None:
        """The program's exit status once it has ended (None if still running after
        `timeout` seconds)."""
        ...

    def close(self) -> None:
        """End the program and everything it started, and free the terminal; idempotent."""
        ...


def open_terminal(
    sandbox: Any,
    cmd: list[str] | None = None,
    *,
    user: str = AGENT_USER,
    cwd: str = AGENT_HOME,
    env: dict[str, str] | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    timeout: float | None = None,
) -> Terminal:
    """Start `cmd` (default: an interactive bash) in `sandbox` as `user`, in `cwd`, with a
    terminal of `size` (rows, columns) and TERM set (to `env`'s, else xterm-256color).

    `timeout` is how long the session may last at most, in seconds (the CPU-time limit of
    its processes follows from it, as for a command; the caller ends the session on time).
    TerminalUnsupported when the sandbox's backend has no terminal."""
    opener = getattr(sandbox, "open_terminal", None)
    if not callable(opener):
        backend = getattr(sandbox, "backend", type(sandbox).__name__)
        raise TerminalUnsupported(
            f"The {backend} sandbox backend gives no interactive terminal (its sandbox has no "
            "open_terminal method); run a person's episode with --sandbox docker or bwrap"
        )
    rows, cols = size
    if rows <= 0 or cols <= 0:
        raise ValueError(f"Expected a terminal size of at least 1x1, got {rows}x{cols}")
    environment = {"TERM": DEFAULT_TERM, **(env or {})}
    terminal: Terminal = opener(cmd or ["/bin/bash", "-i"], user=user, cwd=cwd,
                                env=environment, size=size, timeout=timeout)
    return terminal


def open_pty_in(root: int) -> tuple[int, int]:
    """A new pseudo-terminal of the devpts mounted at dev/pts under the folder `root` (a
    descriptor of a sandbox's root): (master, slave), both close-on-exec. Its slave is a
    device of the sandbox's own /dev/pts, so programs inside find their terminal's name.

    Nothing inside the sandbox may lead this elsewhere: each step is opened below the one
    before without following symbolic links, the master must be a ptmx device, and the slave
    comes from the master itself (TIOCGPTPEER), never from a path. SandboxError when the
    sandbox has no such devpts."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    dev = pts = master = -1
    try:
        dev = os.open("dev", os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=root)
        pts = os.open("pts", os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=dev)
        master = os.open("ptmx", os.O_RDWR | os.O_NOCTTY | flags, dir_fd=pts)
        found = os.fstat(master)
        if not stat.S_ISCHR(found.st_mode) or (os.major(found.st_rdev),
                                                os.minor(found.st_rdev)) != PTMX_DEVICE:
            raise SandboxError("The sandbox's /dev/pts/ptmx is not the ptmx device")
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlock the slave
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        if master >= 0:
            os.close(master)
        raise SandboxError(f"Could not make a terminal in the sandbox's /dev/pts: {error}"
                           ) from error
    except BaseException:
        if master >= 0:
            os.close(master)
        raise
    finally:
        for fd in (pts, dev):
            if fd >= 0:
                os.close(fd)
    return master, int(slave)


def set_pty_size(fd: int, rows: int, cols: int) -> None:
    """Set the size of the pseudo-terminal `fd` (either end) to `rows` x `cols`."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def pty_size(fd: int) -> tuple[int, int] | None:
    """The (rows, columns) of the terminal `fd`, or None when it is no terminal or has no
    size yet."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


class PtyTerminal:
    """A program holding the slave end of a pseudo-terminal whose master end is here.

    `on_close` ends what the program left (its cgroup, say) after the program itself was
    killed; it runs once. The master is non-blocking, so that no read or write ever hangs
    in the kernel: `write` (from any thread) waits in select and gives up once the terminal
    is closed, and the master's descriptor is never used after it was closed."""

    def __init__(
        self, master: int, process: subprocess.Popen[bytes],
        on_close: Callable[[], None] | None = None,
    ):  # fmt: skip
        os.set_blocking(master, False)
        self._master = master
        self._process = process
        self._on_close = on_close
        self._closed = False
        self._fd_lock = threading.Lock()  # held while the descriptor is used or closed
        self._fd_open = True

    @property
    def pid(self) -> int:
        """The host pid of the program (as the host sees it)."""
        return self._process.pid

    def fileno(self) -> int:
        """The master end: readable when the program wrote something (or ended)."""
        return self._master

    def read(self, size: int = 65536) -> bytes:
        """Output of the program, waiting for some; b"" once every holder of the slave end
        is gone (or the terminal was closed)."""
        while True:
            with self._fd_lock:
                if not self._fd_open:
                    return b""
                try:
                    return os.read(self._master, size)
                except BlockingIOError:
                    pass
                except OSError:  # EIO: nothing holds the slave end any more
                    return b""
            self._wait_for(readable=True)

    def write(self, data: bytes) -> None:
        """Type `data`, all of it, waiting while the terminal's input queue is full; what is
        left untyped when the program ends or the terminal is closed is dropped."""
        view = memoryview(data)
        while view:
            with self._fd_lock:
                if not self._fd_open:
                    return
                try:
                    view = view[os.write(self._master, view):]
                    continue
                except BlockingIOError:
                    pass
                except OSError as error:  # the program ended: nothing reads what is typed
                    log.debug("terminal.write_after_end", error=str(error))
                    return
            self._wait_for(readable=False)

    def _wait_for(self, *, readable: bool) -> None:
        """Wait (a little at most) until the master can be read or written."""
        watched = [self._master]
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the caller sees
            select.select(watched if readable else [], [] if readable else watched, [],
                          WAIT_POLL_S)

    def resize(self, rows: int, cols: int) -> None:
        """TIOCSWINSZ on the master: the kernel sends the foreground job SIGWINCH."""
        with self._fd_lock, contextlib.suppress(OSError):
            if self._fd_open:
                set_pty_size(self._master, rows, cols)

    def wait(self, timeout: float | None = None) -> int | None:
        """The program's exit status (as a shell reports it: 128 + a signal's number)."""
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return code if code >= 0 else 128 - code

    def close(self) -> None:
        """Kill the program's process group, then what `on_close` ends; close the master."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()
        self._process.wait()
        try:
            if self._on_close is not None:
                self._on_close()
        finally:
            with self._fd_lock:
                self._fd_open = False
                os.close(self._master)


class SocketTerminal:
    """A program whose terminal is at the far end of a stream socket (Docker's exec with a
    TTY): what it writes arrives raw on the socket, what is sent is typed into it.

    `resize(rows, cols)` and `exit_code()` (None while running) ask the engine; `kill()`
    ends the program and everything it started."""

    def __init__(
        self, sock: Any, *, resize: Callable[[int, int], None],
        exit_code: Callable[[], int | None], kill: Callable[[], None],
    ):  # fmt: skip
        self._holder = sock  # the SDK's wrapper, which keeps the HTTP response alive
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._resize = resize
        self._exit_code = exit_code
        self._kill = kill
        self._closed = False

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def read(self, size: int = 65536) -> bytes:
        """Output of the program; b"" once the engine closed the stream."""
        try:
            return self._sock.recv(size)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        """Type `data`; nothing happens once the program has ended."""
        try:
            self._sock.sendall(data)
        except OSError as error:
            log.debug("terminal.write_after_end", error=str(error))

    def resize(self, rows: int, cols: int) -> None:
        """Ask the engine to resize the exec's TTY."""
        try:
            self._resize(rows, cols)
        except Exception as error:  # the exec ended meanwhile
            log.debug("terminal.resize_failed", error=str(error))

    def wait(self, timeout: float | None = None) -> int | None:
        """The program's exit status, polling the engine until it has one or `timeout`
        passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self._exit_code()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(WAIT_POLL_S)

    def close(self) -> None:
        """Kill the program and what it started, then close the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            self._kill()
        finally:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._sock.close()
            with contextlib.suppress(Exception):
                self._holder.close()
