"""Checks of the limits that contain a misbehaving command: its timeout (with everything it
started), memory, output, file size and number of processes (a fork bomb)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path

from rdbench.sandbox.base import FILE_SIZE_LIMIT, Sandbox
from rdbench.sandbox.conformance.checks import CONFIG, Context, check, expect, said

# Lists the pids of the `sleep N` processes (N from argv) the sandbox holds, seen from inside.
FIND_SLEEPS = """
import os, sys
wanted = {f"sleep\\0{n}\\0".encode() for n in sys.argv[1:]}
for entry in os.listdir("/proc"):
    try:
        if entry.isdigit() and open(f"/proc/{entry}/cmdline", "rb").read() in wanted:
            print(entry)
    except OSError:
        pass
"""


def sleeps_alive(sandbox: Sandbox, seconds: list[str]) -> list[str]:
    """The pids of the `sleep N` processes (N in `seconds`) alive in `sandbox`."""
    result = sandbox.exec(["python3", "-c", FIND_SLEEPS, *seconds], user="root")
    return result.stdout.split()


def kill_sleeps(sandbox: Sandbox, seconds: list[str]) -> None:
    """Kill what a check left of its `sleep N` processes (a weak backend's survivors)."""
    pids = sleeps_alive(sandbox, seconds)
    if pids:
        sandbox.exec(["kill", "-9", *pids], user="root")


@check("limits")
def a_timed_out_command_is_killed_with_everything_it_started(ctx: Context) -> None:
    """A command past its timeout is killed, with every process it started (in the
    background, in a new session), and the sandbox goes on."""
    seconds = [str(random.randint(100_000, 999_999) + n) for n in range(3)]
    script = "sleep {} & setsid sleep {} & sleep {}; echo never".format(*seconds)
    started = time.monotonic()
    try:
        result = ctx.sandbox.exec(["sh", "-c", script], timeout=1.5)
        took = time.monotonic() - started
        expect(result.timed_out and not result.ok, f"the command was not said to time out: "
               f"{said(result)}")  # fmt: skip
        expect("never" not in result.stdout, "the command ran to its end")
        expect(took < 15, f"a command with a 1.5 s timeout took {took:.0f} s to come back")
        deadline = time.monotonic() + 3
        while (alive := sleeps_alive(ctx.sandbox, seconds)) and time.monotonic() < deadline:
            time.sleep(0.1)
        expect(not alive, f"{len(alive)} process(es) the command started survived its timeout")
        expect(ctx.sandbox.exec(["echo", "still works"]).stdout == "still works\n",
               "the sandbox stopped working after a timeout")  # fmt: skip
    finally:
        kill_sleeps(ctx.sandbox, seconds)


@check("limits")
def a_memory_hog_is_killed_and_said_to_be_out_of_memory(ctx: Context) -> None:
    """A command using more memory than the limit is killed (exit code 137), its stderr says
    it ran out of memory, and the sandbox goes on."""
    code = "b = bytearray(1024 * 1024 * 1024); b[::4096] = b'x' * (len(b) // 4096)"
    result = ctx.sandbox.exec(["python3", "-c", code], timeout=60)
    limit = CONFIG.memory_mb
    expect(result.returncode == 137, f"a command touching 1 GB with a {limit} MB limit ended "
           f"with {said(result)}, not killed (137)")  # fmt: skip
    note = f"[rdbench: killed: out of memory (limit {limit} MB)]"
    expect(note in result.stderr, f"its stderr does not say {note!r}: {result.stderr[-200:]!r}")
    expect(ctx.sandbox.exec(["echo", "alive"]).stdout == "alive\n",
           "the sandbox stopped working after the memory hog")  # fmt: skip


@check("limits")
def output_is_capped_and_flagged(ctx: Context) -> None:
    """A command's output is cut at the sandbox's output limit and flagged as truncated."""
    result = ctx.sandbox.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"])
    expect(result.truncated, f"5 MB of output came back whole ({len(result.stdout)} "
           "characters), not flagged as truncated")  # fmt: skip
    expect(result.stdout == "x" * CONFIG.output_limit, f"{len(result.stdout)} characters came "
           f"back, expected the limit's {CONFIG.output_limit}")  # fmt: skip
    expect(result.returncode == 0, f"the command failed: {said(result)}")


@check("limits")
def huge_output_is_drained_without_holding_it_in_memory(ctx: Context) -> None:
    """500 MB of output is read to its end without this process holding it in memory (its
    RSS grows by less than 100 MB)."""
    small = ctx.sandbox.exec(["sh", "-c", "head -c 5000000 /dev/zero"])
    expect(small.truncated, "output is not capped at all (5 MB came back whole): not "
           "trying 500 MB")  # fmt: skip
    baseline = _rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = ctx.sandbox.exec(["sh", "-c", "head -c 500000000 /dev/zero"], timeout=120)
    finally:
        done.set()
        sampler.join()
    expect(result.returncode == 0 and result.truncated, f"the command ended with {said(result)}")
    grew = peak[0] - baseline
    expect(grew < 100 * 1024 * 1024, f"this process's RSS grew by {grew // 2**20} MB")


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@check("limits")
def files_may_not_grow_past_the_size_limit(ctx: Context) -> None:
    """No file written inside may grow past 2 GiB (RLIMIT_FSIZE): a disk filler is stopped."""
    limits = ctx.sandbox.exec(["cat", "/proc/self/limits"]).stdout
    line = next((line for line in limits.splitlines() if line.startswith("Max file size")), "")
    expect(line.split()[3:5] == [str(FILE_SIZE_LIMIT)] * 2,
           f"the file size limit is {' '.join(line.split()[3:5]) or 'not shown'}, expected "
           f"{FILE_SIZE_LIMIT} bytes")  # fmt: skip


@check("limits")
def writing_past_the_disk_limit_says_the_disk_is_full(ctx: Context) -> None:
    """Every writable place shares one size-limited disk: writing past it fails, the
    command's stderr says the sandbox's disk is full, and removing files makes room again
    (checked in a sandbox of its own, with a 64 MB disk)."""
    box = ctx.start(disk_mb=64)
    fill = "dd if=/dev/zero of=fill bs=1M count=128 || exit 1"
    result = box.exec(["sh", "-c", fill], timeout=60)
    expect(result.returncode != 0, f"128 MB were written on a 64 MB disk: {said(result)}")
    expect("No space left on device" in result.stderr, f"it failed otherwise: {said(result)}")
    note = "[rdbench: the sandbox's disk is full (limit 64 MB)]"
    expect(note in result.stderr, f"its stderr does not say {note!r}: {said(result)}")
    more = box.exec(["sh", "-c", "head -c 4M /dev/zero > /tmp/more"])
    expect(more.returncode != 0, "/tmp took 4 MB more on the full disk: it is not the same disk")
    room = box.exec(["sh", "-c", "rm -f fill && head -c 4M /dev/zero > /tmp/more"])
    expect(room.ok, f"removing the filler made no room: {said(room)}")
    box.close()


# Forks children that sleep until killed, up to argv[1] of them, and prints how many it made
# before the sandbox refused (bounded, so a backend without a process limit is not flooded).
COUNT_FORKS = """
import os, signal, sys, time
children = []
try:
    for _ in range(int(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print(len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


@check("limits")
def a_fork_bomb_is_contained(ctx: Context) -> None:
    """A sandbox holds at most its pids limit of processes; a fork bomb is stopped there and
    killed at its timeout, and the host and the sandbox go on (checked in a sandbox of its
    own)."""
    limit = CONFIG.pids
    box = ctx.start()
    made = box.exec(["python3", "-c", COUNT_FORKS, str(limit * 2)], timeout=60)
    count = int(made.stdout.strip() or 0)
    expect(made.ok and count < limit, f"a process forked {count} children with a pids limit "
           f"of {limit} ({said(made)})")  # fmt: skip
    bomb = box.exec(["bash", "-c", "bomb() { bomb | bomb & }; bomb; sleep 60"], timeout=3)
    expect(bomb.timed_out, f"the fork bomb was not stopped at its timeout: {said(bomb)}")
    started = time.perf_counter()
    subprocess.run(["true"], check=True)
    took = time.perf_counter() - started
    expect(took < 2.0, f"the host took {took:.1f} s to start a process after the fork bomb")
    after = box.exec(["echo", "alive"], timeout=30)
    expect(after.stdout == "alive\n", f"the sandbox stopped working after the fork bomb: "
           f"{said(after)}")  # fmt: skip
    box.close()
