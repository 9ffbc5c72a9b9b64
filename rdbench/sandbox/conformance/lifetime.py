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


@check("lifetime")
def nothing_started_inside_outlives_the_sandbox(ctx: Context) -> None:
    """Processes left running inside (in the background, in a new session) end when the
    sandbox closes (seen from this machine, where every local backend's processes show)."""
    box = ctx.start()
    seconds = str(random.randint(100_000, 999_999))
    commands = [f"sleep\0{n}\0".encode() for n in (seconds, str(int(seconds) + 1))]
    alive: list[int] = []
    try:
        script = (f"nohup sleep {seconds} >/dev/null 2>&1 & "
                  f"setsid sleep {int(seconds) + 1} >/dev/null 2>&1 & echo started")  # fmt: skip
        started = box.exec(["sh", "-c", script])
        expect(started.ok, f"could not start background processes: {said(started)}")
        box.close()
        deadline = time.monotonic() + 5
        while (alive := [p for c in commands for p in host_pids_running(c)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        expect(not alive, f"{len(alive)} process(es) started inside outlived the sandbox")
    finally:  # what this check started must not outlive it either
        for pid in [p for c in commands for p in host_pids_running(c)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
