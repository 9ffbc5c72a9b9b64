"""Starts and times score.py's training runs, each in a process forked from this one.

    python -I runner.py      (as root in the grading sandbox, by score.py)

It imports numpy and torch with the grader's thread settings (through tolerance.py), so no run
pays for starting Python or for those imports, makes itself the "subreaper" of everything it
starts (a process that leaves its parent is re-parented here, so its CPU time is counted when
it is reaped), then answers score.py's commands, one JSON object a line on stdin, each answered
by one JSON line on stdout:

- `{"do": "start_original", "script", "args", "cwd", "log", "seconds", "cpu"}`: fork the
  original training (as root: the agent's code can neither signal nor trace it) and let it
  run for `seconds` pinned to core `cpu`, then pause it (SIGSTOP). Its output goes through
  EpochClock, which notes its CPU time at the end of every epoch;
- `{"do": "resume_original", "seconds", "cpu"}`: let it run for `seconds` more (null: to its
  end), pinned to core `cpu`;
- `{"do": "run_agent", "script", "args", "cwd", "log", "timeout", "cpu"}`: fork a run of the
  agent's script as the agent user, in its own session, started on core `cpu`, while the
  original is paused; when it exits (or times out), kill every process of the agent user
  and reap them all.

Answers about the original give its state ("paused" or "exited"), its running time and CPU
time so far and,
once it has exited, its exit code, CPU seconds and CPU seconds at the end of each epoch.
Answers about an agent run give its exit code, whether it timed out, its wall-clock seconds and
the CPU seconds of every process it started (its own, its threads', and its descendants'
however they ended): where the grading sandbox's cgroup counter is visible (Docker), its rise
during the run less this process's own CPU time, which counts even a child its parent never
waited for (SIGCHLD ignored: the kernel reaps it, and no wait4 sees its time); without one,
the process tree's (`tree_cpu_s`, also given for the record).

It learns each run's arguments only when it is told to start it, so a run (a copy of this
process's memory) never finds the seeds of the runs after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import select
import signal
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tolerance  # noqa: E402  (imports numpy and torch, with the thread settings)
from rdbench_grading import (  # noqa: E402
    AGENT_USER,
    CpuCounter,
    grader_cpu_s,
    threads_cpu_s,
)

GRADER_MODULES = ("tolerance", "rdbench_grading")
PR_SET_DUMPABLE = 4
REAP_TIMEOUT_S = 5.0
COUNTER = CpuCounter.find()  # the grading sandbox's cgroup CPU counter, if visible


class EpochClock:
    """The original's stdout in its own process: passes every line on and, at each line that
    ends an epoch ("epoch k/N: ..."), writes the process's CPU seconds so far to `stamps`."""

    def __init__(self, out: Any, stamps: str):
        self.out = out
        self.stamps = open(stamps, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.pending = ""

    def write(self, text: str) -> int:
        """Pass `text` on; stamp the epochs it ends."""
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith("epoch "):
                self.stamps.write(f"{time.process_time()!r}\n")
        return self.out.write(text)

    def flush(self) -> None:
        """Flush the output."""
        self.out.flush()


class Original:
    """The grader's original training: forked once, then run in slices and paused between,
    each slice pinned to a given core."""

    def __init__(self, script: str, args: list[str], cwd: str, log: str):
        self.stamps = f"{log}.epochs"

        def prepare() -> None:
            os.chdir(cwd)
            _redirect_output(log)
            sys.stdout = EpochClock(sys.stdout, self.stamps)

        self.pid = tolerance.run_forked(script, args, prepare=prepare)
        self.pidfd = os.pidfd_open(self.pid)
        self.running_s = 0.0
        self.result: dict[str, Any] | None = None  # set when it has exited
        os.kill(self.pid, signal.SIGSTOP)  # its first slice starts with run_for
        _, status, usage = os.wait4(self.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            self.exited(status, usage)

    def run_for(self, seconds: float | None, cpu: int) -> dict[str, Any]:
        """Let it run on core `cpu` for `seconds` (None: to its end), then pause it again;
        its state."""
        if self.result is None:
            os.sched_setaffinity(self.pid, {cpu})
            start = time.perf_counter()
            os.kill(self.pid, signal.SIGCONT)
            exited = select.select([self.pidfd], [], [], seconds)[0]
            if not exited:
                os.kill(self.pid, signal.SIGSTOP)
            _, status, usage = os.wait4(self.pid, os.WUNTRACED)  # stopped, or exited meanwhile
            self.running_s += time.perf_counter() - start
            if not os.WIFSTOPPED(status):
                self.exited(status, usage)
        so_far = self.result["cpu_s"] if self.result else threads_cpu_s(self.pid)
        return {"state": "paused", **(self.result or {}), "running_s": self.running_s,
                "cpu_so_far_s": so_far}

    def exited(self, status: int, usage: Any) -> None:
        """Record its end (reaped here, or by whoever reaped it)."""
        try:
            with open(self.stamps, encoding="utf-8") as handle:
                epochs = [float(line) for line in handle]
        except (OSError, ValueError):
            epochs = []
        self.result = {
            "state": "exited",
            "returncode": os.waitstatus_to_exitcode(status),
            "cpu_s": tolerance.cpu_s(usage),
            "epoch_end_cpu_s": epochs,
        }
        os.close(self.pidfd)

    def kill(self) -> None:
        """End it, if it still runs."""
        if self.result is None:
            os.kill(self.pid, signal.SIGKILL)
            os.wait4(self.pid, 0)
            self.result = {"state": "killed"}



def _redirect_output(log: str) -> None:
    """In a forked child: stdin from /dev/null, stdout and stderr to `log`.out and `log`.err,
    and no other file descriptor of this process left open."""
    streams = [os.open(os.devnull, os.O_RDONLY)]
    for suffix in ("out", "err"):
        streams.append(os.open(f"{log}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    for target, fd in enumerate(streams):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)  # noqa: SIM115


def _become_agent(cwd: str, log: str, cpu: int) -> None:
    """In a forked child: become a process of the agent's, as `python train.py` would be,
    started on core `cpu` (it may change its cores)."""
    os.setsid()
    os.sched_setaffinity(0, {cpu})
    _redirect_output(log)  # the log files are root's; the open descriptors stay usable
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **tolerance.THREAD_ENV,
    }
    if os.geteuid() == 0:
        agent = pwd.getpwnam(AGENT_USER)
        os.setgroups([])
        os.setgid(agent.pw_gid)
        os.setuid(agent.pw_uid)
        # A process that changed its user is not "dumpable": its /proc entry would stay root's
        # and kill_agent_processes would miss it. It holds nothing of root's any more.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        env.update(HOME=cwd, USER=AGENT_USER)  # its copy of the workspace (see score.py)
    else:
        env["HOME"] = os.environ.get("HOME", cwd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for name in GRADER_MODULES:
        sys.modules.pop(name, None)
    sys.path[:] = [entry for entry in sys.path if entry != HERE]


def run_agent(
    original: Original | None,
    script: str,
    args: list[str],
    cwd: str,
    log: str,
    timeout: float,
    cpu: int,
) -> dict[str, Any]:
    """Run the agent's script once (forked, as the agent user) and clean up after it."""
    counter_start = _sandbox_cpu_s()
    start = time.perf_counter()
    pid = tolerance.run_forked(script, args, prepare=lambda: _become_agent(cwd, log, cpu))
    pidfd = os.pidfd_open(pid)
    timed_out = not select.select([pidfd], [], [], timeout)[0]
    os.close(pidfd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    wall_s = time.perf_counter() - start
    cpu_s = tolerance.cpu_s(usage)
    killed: set[int] = set()
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while time.monotonic() < deadline:  # kill what it left behind, reap it, count its CPU
        cpu_s += _reap_exited(original)  # (everything it left is re-parented here)
        alive = _agent_processes()
        if not alive:
            break
        for left in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)
        killed |= alive
        time.sleep(0.01)
    tree_cpu_s = cpu_s
    counter_end = _sandbox_cpu_s()
    if counter_start is not None and counter_end is not None:
        cpu_s = max(counter_end - counter_start, tree_cpu_s)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "tree_cpu_s": tree_cpu_s,
        "killed": len(killed - {pid}),
    }


def _sandbox_cpu_s() -> float | None:
    """CPU seconds of the whole grading sandbox so far but this process's own (rdbench_grading's
    CpuCounter), None where no cgroup counter is visible. While a run of train.py goes on,
    nothing else in the sandbox works (the original is paused, score.py waits for an answer),
    so its rise is the run's CPU time, counting what the process tree cannot: a child reaped
    by the kernel because its parent ignores SIGCHLD is waited for by nobody."""
    if COUNTER is None:
        return None
    return COUNTER.seconds() - grader_cpu_s()


def _agent_processes() -> set[int]:
    """The pids of every process of the agent user (none when this runs as a plain user)."""
    if os.geteuid() != 0:
        return set()
    uid = pwd.getpwnam(AGENT_USER).pw_uid
    found = set()
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                found.add(int(name))
        except OSError:
            continue
    return found


def _reap_exited(original: Original | None) -> float:
    """Reap every exited child but the original; the CPU seconds they used."""
    total = 0.0
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return total
        if pid == 0:
            return total
        if original is not None and pid == original.pid:
            original.exited(status, usage)  # killed while paused (out of memory?): not ours
        else:
            total += tolerance.cpu_s(usage)


def main() -> None:
    """Answer score.py's commands until stdin closes."""
    tolerance.adopt_orphans()
    original: Original | None = None
    answer: dict[str, Any]
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["do"] == "start_original":
                original = Original(
                    command["script"], command["args"], command["cwd"], command["log"]
                )
                answer = original.run_for(command["seconds"], command["cpu"])
            elif command["do"] == "resume_original":
                assert original is not None, "start_original first"
                answer = original.run_for(command["seconds"], command["cpu"])
            elif command["do"] == "run_agent":
                answer = run_agent(
                    original, command["script"], command["args"], command["cwd"],
                    command["log"], command["timeout"], command["cpu"],
                )
            else:
                raise ValueError(f"unknown command {command['do']!r}")
            print(json.dumps(answer), flush=True)
    finally:
        if original is not None:
            original.kill()


if __name__ == "__main__":
    main()
