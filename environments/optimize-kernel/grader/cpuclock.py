"""The CPU time of one run of a kernel, measured from outside its processes.

CPU time is what the score compares: unlike wall time it hardly moves when other work shares
the machine (a run that waits for a core is not charged for the wait), so a busy machine
scores the same kernel the same. It must count all the work a run does, wherever it does it:

- In a grading sandbox whose cgroup counter is visible (Docker and bwrap with cgroups: see
  rdbench_grading's CpuCounter), the run costs the counter's rise from just before its input is
  written to just after all its processes are killed, minus the grader's own CPU time meanwhile.
  That counts every thread and process of the agent user's, however it ended (a thread, a child
  nobody waited for, an orphan, a daemon), and there is nothing else in the sandbox that could
  do the work while the kernel sleeps or waits.
- Without one (a bwrap sandbox on a host where no cgroup can be made; a grader run by hand), the
  process tree: this process is the "subreaper" of everything it starts, so an orphan is
  re-parented here and reaped with its CPU time; a run costs the harness's own CPU time (all
  its threads and the children it waited for) plus that of every orphan, minus what its threads
  had used when the input was written. A child whose parent ignores SIGCHLD is reaped by the kernel
  with nobody's accounting: this mode cannot count it (the cgroup mode does).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from dataclasses import dataclass

from rdbench_grading import CpuCounter, grader_cpu_s, threads_cpu_s

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Reading:
    """The CPU seconds of one run: `counted` is all the run's work, wherever it was done (the
    cgroup counter where there is one); `own` is the CPU time of the run's first process and
    the children it waited for. For the grader's starting kernel, which starts nothing, `own`
    is all its work, and nothing another process does can inflate it."""

    counted: float
    own: float


class CpuClock:
    """Measures one run at a time: begin(pid) before the input exists, reap(proc) once the
    run's process group is killed, stop() once every process of the agent user is killed."""

    def __init__(self, *, use_counter: bool = True) -> None:
        self.counter = CpuCounter.find() if use_counter else None
        self.mode = "cgroup" if self.counter is not None else "process tree"
        if self.counter is None:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        self._counter_start = 0.0
        self._threads_start = 0.0
        self._own = 0.0

    def begin(self, pid: int) -> None:
        """Start the clock for the run whose first process is `pid`."""
        self._threads_start = threads_cpu_s(pid)
        self._own = 0.0
        if self.counter is not None:
            self._counter_start = self.counter.seconds() - grader_cpu_s()

    def reap(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the run's first process (killed), keeping its CPU time."""
        if proc.returncode is not None:  # already reaped: the run failed, its time is moot
            return
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        self._own = max(usage.ru_utime + usage.ru_stime - self._threads_start, 0.0)

    def stop(self) -> Reading:
        """The CPU seconds of the run since begin() (call after everything it started was
        killed)."""
        if self.counter is not None:
            counted = self.counter.seconds() - grader_cpu_s() - self._counter_start
            return Reading(counted=max(counted, 0.0), own=self._own)
        orphans = 0.0
        while True:  # the orphans re-parented here, killed by now
            try:
                pid, _, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            orphans += usage.ru_utime + usage.ru_stime
        return Reading(counted=self._own + orphans, own=self._own)
