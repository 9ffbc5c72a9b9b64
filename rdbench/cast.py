"""A terminal session as an asciinema v2 cast: written as it happens, read back, replayed.

The file (`session.cast` in the episode folder) is one JSON header line, `{"version": 2,
"width", "height", "timestamp", "env": {"TERM", "SHELL"}, "title"}`, then one event a line,
`[seconds, code, text]`: `"o"` for what the screen showed, `"i"` for what was typed (only
where the person opted in), `"r"` with `"COLSxROWS"` for a resize. Every line is flushed as it
is written, so a runner that dies leaves a valid cast of what happened until then.

Bytes are decoded as UTF-8 incrementally, one decoder per stream: a character split between
two chunks is written whole with the second; bytes that are no UTF-8 become U+FFFD.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

CAST = "session.cast"
"""The file name of an episode's terminal recording, in its folder."""
CAST_VERSION = 2
MAX_IDLE_S = 2.0  # a replay's longest pause, however long the person paused


class CastError(ValueError):
    """A file that is no asciinema v2 cast; the message says what is wrong."""


class CastWriter:
    """Writes one session's cast to `path` as it goes; times are seconds since it was made,
    read from `clock` (monotonic)."""

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        title: str = "",
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = Path(path)
        self.size = (int(height), int(width))  # rows, columns: the last size recorded
        self._clock = clock
        self._started = clock()
        self._decoders = {code: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for code in ("o", "i")}  # fmt: skip
        self._file: TextIO = self.path.open("w", encoding="utf-8")
        header = {"version": CAST_VERSION, "width": int(width), "height": int(height),
                  "timestamp": int(time.time()), "env": dict(env or {}), "title": title}
        self._line(header)

    def output(self, data: bytes) -> None:
        """Record `data` as shown on the screen now."""
        self._event("o", data)

    def input(self, data: bytes) -> None:
        """Record `data` as typed now."""
        self._event("i", data)

    def resize(self, rows: int, cols: int) -> None:
        """Record that the terminal now has `rows` x `cols`."""
        if not self.closed:
            self.size = (int(rows), int(cols))
            self._line([self._now(), "r", f"{int(cols)}x{int(rows)}"])

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._file.closed

    def close(self) -> None:
        """Write what the decoders still hold and close the file; safe to call again."""
        if self.closed:
            return
        for code, decoder in self._decoders.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                self._line([self._now(), code, rest])
        self._file.close()

    def _event(self, code: str, data: bytes) -> None:
        if self.closed:
            return
        text = self._decoders[code].decode(data)
        if text:  # nothing yet when the chunk ends inside a character
            self._line([self._now(), code, text])

    def _now(self) -> float:
        return round(max(self._clock() - self._started, 0.0), 6)

    def _line(self, value: Any) -> None:
        self._file.write(json.dumps(value, ensure_ascii=False) + "\n")
        self._file.flush()


@dataclass(frozen=True)
class Cast:
    """A cast read back: its header and its events `(seconds, code, text)`."""

    header: dict[str, Any]
    events: list[tuple[float, str, str]]

    @property
    def output(self) -> str:
        """Everything the screen showed, in order."""
        return "".join(text for _, code, text in self.events if code == "o")

    @property
    def typed(self) -> str:
        """Everything recorded as typed ('' when keystrokes were not recorded)."""
        return "".join(text for _, code, text in self.events if code == "i")

    @property
    def seconds(self) -> float:
        """The time of the last event."""
        return self.events[-1][0] if self.events else 0.0


def read_cast(path: str | Path) -> Cast:
    """The cast in `path` (CastError saying which line is wrong). A last line cut short (a
    runner that died while writing) is left out."""
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CastError(f"{file}: not a readable cast ({error})") from error
    if not lines:
        raise CastError(f"{file}: empty; a cast starts with its JSON header line")
    try:
        header = json.loads(lines[0])
    except ValueError as error:
        raise CastError(f"{file}: line 1 is no JSON header ({error})") from error
    if not isinstance(header, dict) or header.get("version") != CAST_VERSION:
        raise CastError(f"{file}: not an asciinema v{CAST_VERSION} cast (its header says "
                        f"version {header.get('version') if isinstance(header, dict) else '?'})")
    events: list[tuple[float, str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            seconds, code, text = json.loads(line)
        except ValueError as error:
            if number == len(lines):
                break  # cut short by a crash
            raise CastError(f"{file}: line {number} is no event [time, code, text] "
                            f"({error})") from error
        if not isinstance(seconds, int | float) or not isinstance(text, str) or \
                code not in ("o", "i", "r", "m"):
            raise CastError(f"{file}: line {number} is no event [time, code, text]: {line}")
        events.append((float(seconds), code, text))
    return Cast(header=header, events=events)


def play(
    cast: Cast,
    write: Callable[[str], None],
    *,
    speed: float = 1.0,
    max_idle: float = MAX_IDLE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Replay what `cast` showed through `write`, with its timing divided by `speed` and no
    pause longer than `max_idle` seconds (of the recording)."""
    if speed <= 0:
        raise ValueError(f"Expected speed > 0, got {speed}")
    if max_idle <= 0:
        raise ValueError(f"Expected max_idle > 0 seconds, got {max_idle}")
    previous = 0.0
    for seconds, code, text in cast.events:
        if code != "o":
            continue
        pause = min(max(seconds - previous, 0.0), max_idle) / speed
        previous = seconds
        if pause > 0:
            sleep(pause)
        write(text)
