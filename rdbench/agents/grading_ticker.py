"""The seconds of the final grading going by on a person's screen, so that the wait after
their session ends is not silence (the human agent starts it when the session ends and
stops it when the episode is over)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TextIO

TICK_S = 1.0
TEXT = "[rdbench] grading on the hidden test split..."


class GradingTicker:
    """Rewrites one line, `TEXT N s`, every TICK_S seconds from its own thread until
    stopped; then ends the line with the time it took. Only on a terminal (elsewhere it
    writes nothing). `start` and `stop` may be called more than once."""

    def __init__(self, tick_s: float = TICK_S):
        self._tick_s = tick_s
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: TextIO | None = None
        self._started = 0.0

    def start(self, out: TextIO) -> None:
        """Show the seconds on `out` (when it is a terminal) until `stop`."""
        if self._thread is not None or not _is_terminal(out):
            return
        self._out, self._started = out, time.monotonic()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="rdbench-grading-ticker",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Stop and end the line with the grading's time."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopped.set()
        thread.join(5.0)
        self._write(f"\r{TEXT} {time.monotonic() - self._started:.0f} s, done\n")

    def _run(self) -> None:
        while not self._stopped.wait(self._tick_s):
            self._write(f"\r{TEXT} {time.monotonic() - self._started:.0f} s")

    def _write(self, text: str) -> None:
        if self._out is None:
            return
        with contextlib.suppress(OSError, ValueError):  # the person's terminal went away
            self._out.write(text)
            self._out.flush()


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (OSError, ValueError):
        return False
