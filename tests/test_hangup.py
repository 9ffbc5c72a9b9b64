"""A person's terminal hanging up under a run: SIGHUP stops an agent's run but not a
person's, and the runner's streams that were that terminal are pointed at /dev/null (so no
write can fail the run); a live terminal is left alone."""

from __future__ import annotations

import os
import pty
import signal

import pytest

from rdbench.hangup import dead_terminal, detach
from rdbench.runner import RunStopped, signals_stop_the_run


def test_a_hung_up_terminal_is_detached_and_a_live_one_is_left() -> None:
    master, slave = pty.openpty()
    live_master, live = pty.openpty()
    try:
        assert not dead_terminal(slave) and not dead_terminal(live)
        os.close(master)  # the person's terminal goes away
        master = -1
        assert dead_terminal(slave)
        assert detach((slave, live)) == [slave]
        assert os.path.samestat(os.fstat(slave), os.stat(os.devnull))
        assert os.write(slave, b"the results table") == len(b"the results table")
        assert os.isatty(live) and os.write(live, b"x") == 1  # untouched
    finally:
        for fd in (master, slave, live_master, live):
            if fd >= 0:
                os.close(fd)


def test_sighup_stops_an_agents_run_but_not_a_persons() -> None:
    with pytest.raises(RunStopped, match="SIGHUP"), signals_stop_the_run():
        os.kill(os.getpid(), signal.SIGHUP)
    with signals_stop_the_run(person_at_terminal=True):
        os.kill(os.getpid(), signal.SIGHUP)  # the person left: the run goes on
        with pytest.raises(RunStopped, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
