"""A person's terminal closing under a run: the runner lives on to grade and record.

When a person works in the run's own terminal (the human agent) and that terminal goes away
(a closed window, a killed tmux session), the runner gets SIGHUP, its stdin gives end of
input and its writes fail with EIO. For an automated agent's run SIGHUP stops the run and
leaves the episode unfinished, to be resumed (rdbench.runner); a person's work cannot be
replayed, so in their run SIGHUP only means they left: their session sees the end of input
itself and ends as the person leaving, and the episode is graded and recorded.

`on_hangup` is that SIGHUP handler. It points the runner's stdout and stderr at /dev/null
once they are a dead terminal, so that no log line, progress message or final table written
there can fail the run; a terminal still alive (a SIGHUP sent by hand) is left as it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

import structlog

log = structlog.get_logger()

STREAMS = (1, 2)  # stdout, stderr
WATCH_S = 10.0  # how long after SIGHUP the streams are watched for the terminal to die
POLL_S = 0.05


def dead_terminal(fd: int) -> bool:
    """True when writing to `fd` fails because its terminal hung up (EIO) or its reader is
    gone (EPIPE)."""
    try:
        os.write(fd, b"")
    except OSError as error:
        return error.errno in (errno.EIO, errno.EPIPE, errno.ENXIO)
    return False


def detach(fds: tuple[int, ...] = STREAMS) -> list[int]:
    """Point each of `fds` whose terminal is dead at /dev/null; the fds detached now."""
    dead = [fd for fd in fds if dead_terminal(fd)]
    if dead:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in dead:
                os.dup2(null, fd)
        finally:
            os.close(null)
    return dead


def on_hangup(signum: int, frame: object) -> None:
    """SIGHUP in a person's run: detach stdout and stderr from the dead terminal (now, or as
    soon as it dies: the signal may come before the hang-up), and let the run go on."""
    if len(detach()) < len(STREAMS):
        threading.Thread(target=_detach_when_dead, name="rdbench-hangup", daemon=True).start()
    with contextlib.suppress(OSError):  # stderr may still be the dead terminal
        log.info("run.person_hung_up", reason="the person's terminal closed: their episode "
                 "ends as they left it, graded")


def _detach_when_dead() -> None:
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline and not all(_detached(fd) for fd in STREAMS):
        with contextlib.suppress(OSError):
            detach()
        time.sleep(POLL_S)


def _detached(fd: int) -> bool:
    """True when `fd` is /dev/null (or gone)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(os.devnull))
    except OSError:
        return True
