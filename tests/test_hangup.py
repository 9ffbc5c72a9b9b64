"""A person's terminal hanging up under a run: the runner's streams that were that terminal
are pointed at /dev/null (so no write can fail the run); a live terminal is left alone."""

from __future__ import annotations

import os
import pty

from rdbench.hangup import dead_terminal, detach


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
