"""The asciinema v2 cast of a terminal session: written as it goes, read back, replayed with
its timing (a fake clock: no real waiting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdbench.cast import CastError, CastWriter, play, read_cast


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _writer(path: Path, clock: FakeClock) -> CastWriter:
    return CastWriter(path, width=120, height=40, title="toy", clock=clock,
                      env={"TERM": "xterm-256color", "SHELL": "/bin/bash"})


def test_header_and_events_are_asciinema_v2(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = _writer(tmp_path / "s.cast", clock)
    writer.output(b"$ ")
    clock.now += 1.5
    writer.input(b"ls\r")
    writer.resize(30, 100)
    writer.output(b"ls\r\nanswer.py\r\n")
    writer.close()
    header, *events = [json.loads(line) for line in (tmp_path / "s.cast").read_text().splitlines()]
    assert header["version"] == 2 and (header["width"], header["height"]) == (120, 40)
    assert header["env"] == {"TERM": "xterm-256color", "SHELL": "/bin/bash"}
    assert isinstance(header["timestamp"], int) and header["title"] == "toy"
    assert events == [[0.0, "o", "$ "], [1.5, "i", "ls\r"], [1.5, "r", "100x30"],
                      [1.5, "o", "ls\r\nanswer.py\r\n"]]


def test_a_character_split_between_chunks_is_written_whole(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = _writer(tmp_path / "s.cast", clock)
    text = "température 25 °C ✓".encode()
    cut = text.index("✓".encode()) + 1  # inside the three bytes of ✓
    writer.output(text[:cut])
    writer.output(text[cut:])
    writer.output(b"bad \xff byte")
    writer.close()
    cast = read_cast(tmp_path / "s.cast")
    assert cast.output == "température 25 °C ✓bad \ufffd byte"
    assert cast.events[0][2] == "température 25 °C "


def test_a_character_cut_short_at_the_end_is_kept_as_a_replacement(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "s.cast", FakeClock())
    writer.output("ok é".encode()[:-1])
    writer.close()
    assert read_cast(tmp_path / "s.cast").output == "ok \ufffd"


def test_each_event_is_on_disk_before_the_writer_is_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = _writer(tmp_path / "s.cast", clock)
    clock.now += 0.25
    writer.output(b"hello\r\n")
    cast = read_cast(tmp_path / "s.cast")  # as a crash would leave it
    assert cast.events == [(0.25, "o", "hello\r\n")]
    writer.close()
    writer.output(b"after close")  # ignored, no error
    assert read_cast(tmp_path / "s.cast").output == "hello\r\n"


def test_a_last_line_cut_short_is_left_out_and_a_bad_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.cast"
    path.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "a"]\n[0.2, "o", "b')
    assert read_cast(path).output == "a"
    path.write_text('{"version": 2, "width": 80, "height": 24}\nnot json\n[0.2, "o", "b"]\n')
    with pytest.raises(CastError, match="line 2"):
        read_cast(path)
    path.write_text('{"version": 1}\n')
    with pytest.raises(CastError, match="not an asciinema v2 cast"):
        read_cast(path)


def test_replay_keeps_the_timing_divided_by_speed_with_idle_gaps_capped(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    writer = _writer(tmp_path / "s.cast", clock)
    for advance, chunk in ((0.0, b"a"), (0.5, b"b"), (60.0, b"c"), (1.0, b"d")):
        clock.now += advance
        writer.output(chunk)
    writer.input(b"typed")  # never replayed to the screen
    writer.close()
    shown: list[str] = []
    pauses: list[float] = []
    play(read_cast(tmp_path / "s.cast"), shown.append, speed=2.0, max_idle=2.0,
         sleep=pauses.append)
    assert "".join(shown) == "abcd"
    assert pauses == [pytest.approx(0.25), pytest.approx(1.0), pytest.approx(0.5)]


def test_replay_at_high_speed_gives_the_recorded_bytes(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = _writer(tmp_path / "s.cast", clock)
    shown = "[0:09:59 left] ~$ echo é\r\né\r\n\x1b[1mbold\x1b[0m\r\n".encode()
    for start in range(0, len(shown), 3):  # chunks cut inside characters
        clock.now += 0.01
        writer.output(shown[start:start + 3])
    writer.close()
    replayed: list[str] = []
    play(read_cast(tmp_path / "s.cast"), replayed.append, speed=1000.0)
    assert "".join(replayed).encode() == shown


def test_replay_refuses_a_speed_that_is_not_positive(tmp_path: Path) -> None:
    _writer(tmp_path / "s.cast", FakeClock()).close()
    with pytest.raises(ValueError, match="speed > 0"):
        play(read_cast(tmp_path / "s.cast"), print, speed=0)


def test_rdbench_transcript_play_replays_the_cast_of_an_episode(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rdbench.cli import app

    clock = FakeClock()
    writer = _writer(tmp_path / "session.cast", clock)
    writer.output(b"[0:09:58 left] ~$ ")
    clock.now += 30.0  # a long pause: capped
    writer.output("echo hé\r\nhé\r\n".encode())
    writer.close()
    played = CliRunner().invoke(app, ["transcript", str(tmp_path), "--play", "--speed", "100"])
    assert played.exit_code == 0, played.output
    assert played.stdout_bytes == "[0:09:58 left] ~$ echo hé\r\nhé\r\n".encode()
    (tmp_path / "agent-episode").mkdir()
    missing = CliRunner().invoke(app, ["transcript", str(tmp_path / "agent-episode"), "--play"])
    assert missing.exit_code != 0 and "No terminal recording" in missing.output
