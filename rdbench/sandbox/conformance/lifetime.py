"""Checks of a sandbox's end: close is idempotent, and nothing started inside outlives it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

from rdbench.sandbox.conformance.checks import Context, check, expect, said


def host_pids_running(command: bytes) -> list[int]:
    """The pids of this machine's processes whose command line is exactly `command` (NULs
    between the words)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path("/proc", entry, "cmdline").read_bytes() == command:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


@check("lifetime")
def close_is_idempotent(ctx: Context) -> None:
    """close() ends a sandbox and may be called again."""
    box = ctx.start()
    expect(box.exec(["true"]).ok, "a fresh sandbox could not run `true`")
    box.close()
    box.close()


def _background_processes_end(ctx: Context, *, with_block: bool) -> None:
    """Start two background sleeps in a fresh sandbox, end it (close(), or leaving a `with`
    block), and fail unless they are gone from this machine within seconds."""
    seconds = str(random.randint(100_000, 999_999))
    commands = [f"sleep\0{n}\0".encode() for n in (seconds, str(int(seconds) + 1))]
    script = (f"nohup sleep {seconds} >/dev/null 2>&1 & "
              f"setsid sleep {int(seconds) + 1} >/dev/null 2>&1 & echo started")  # fmt: skip
    alive: list[int] = []
    try:
        box = ctx.start()
        if with_block:
            with box:
                started = box.exec(["sh", "-c", script])
        else:
            started = box.exec(["sh", "-c", script])
            box.close()
        expect(started.ok, f"could not start background processes: {said(started)}")
        deadline = time.monotonic() + 3
        while (alive := [p for c in commands for p in host_pids_running(c)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        ended = "leaving its with block" if with_block else "close()"
        expect(not alive, f"{len(alive)} process(es) started inside outlived {ended}")
    finally:  # what this check started must not outlive it either
        for pid in [p for c in commands for p in host_pids_running(c)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@check("lifetime")
def nothing_started_inside_outlives_close(ctx: Context) -> None:
    """Processes left running inside (in the background, in a new session) end when the
    sandbox is closed (seen from this machine, where every local backend's processes show)."""
    _background_processes_end(ctx, with_block=False)


@check("lifetime")
def leaving_a_with_block_closes_the_sandbox(ctx: Context) -> None:
    """A sandbox used as a context manager is closed when its `with` block ends: nothing
    started inside outlives it."""
    _background_processes_end(ctx, with_block=True)
