"""The run observers: the live display and the JSON lines, called from many threads at once."""

from __future__ import annotations

import io
import json
import threading

from report_fixtures import make_result
from rich.console import Console

from rdbench.progress import JsonLinesProgress, LiveProgress, make_observer
from rdbench.records import EpisodeResult
from rdbench.run_observer import EpisodeProgress, RunObserver

THREADS = 8
STEPS = 20


def drive(observer: RunObserver, seed: int, skipped: bool) -> EpisodeResult:
    """What the runner does for one episode: start, steps, finish (or only a skip)."""
    result = make_result("task-a", "x", seed, "submitted" if seed % 3 else "limit", 0.5)
    if not skipped:
        observer.episode_started(result.episode_id, "task-a", "x", seed)
        for step in range(1, STEPS + 1):
            observer.episode_progress(EpisodeProgress(
                result.episode_id, "task-a", "x", seed, step, working_s=step * 1.5,
                tokens=step * 100, cost_usd=step * 0.01, last_score=0.1 * (step % 5) or None))
    observer.episode_finished(result, skipped=skipped)
    return result


def run_threads(observer: RunObserver, skipped: set[int]) -> None:
    observer.run_started(THREADS)
    threads = [threading.Thread(target=drive, args=(observer, seed, seed in skipped))
               for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    observer.run_finished()


def test_json_lines_gives_one_parsable_line_per_event_from_many_threads() -> None:
    out = io.StringIO()
    run_threads(JsonLinesProgress(out), skipped={0, 1})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    running = THREADS - 2
    assert len(lines) == 1 + running * (1 + STEPS + 1) + 2 + 1
    events = [line["event"] for line in lines]
    assert events[0] == "run.started" and events[-1] == "run.finished"
    assert events.count("episode.progress") == running * STEPS
    assert events.count("episode.skipped") == 2
    assert events.count("episode.finished") == running
    assert lines[-1]["done"] == THREADS and lines[-1]["skipped"] == 2
    finished = [line for line in lines if line["event"] == "episode.finished"]
    assert sorted(line["done"] for line in finished + [
        line for line in lines if line["event"] == "episode.skipped"]) == list(
        range(1, THREADS + 1))


def test_live_display_counts_every_episode_from_many_threads() -> None:
    screen = io.StringIO()
    live = LiveProgress(Console(file=screen, force_terminal=True, width=140),
                        refresh_per_second=50)
    stop = threading.Event()

    def keep_rendering() -> None:  # the display drawn while threads report
        while not stop.is_set():
            Console(file=io.StringIO(), width=140).print(live.render())

    drawer = threading.Thread(target=keep_rendering)
    drawer.start()
    run_threads(live, skipped={2})
    stop.set()
    drawer.join()
    assert (live.tally.done, live.tally.finished, live.tally.skipped) == (THREADS, 7, 1)
    assert live.tally.outcomes == {"limit": 3, "submitted": 4}  # seeds 0, 3, 6: limit
    assert live.tally.skipped_ids == {make_result("task-a", "x", 2, "limit", 0.5).episode_id}
    final = screen.getvalue()
    assert "8/8 done" in final and "1 skipped" in final and "limit 3" in final


def test_live_display_shows_a_row_per_running_episode() -> None:
    live = LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=140))
    live.tally.total = 3
    live.episode_started("e1", "task-a", "x", 4)
    live.episode_progress(EpisodeProgress("e1", "task-a", "x", 4, 7, 95.0, 12345, 0.25, 0.625))
    live.episode_started("e2", "task-b", "y", 1)
    screen = Console(file=io.StringIO(), width=140)
    screen.print(live.render())
    text = screen.file.getvalue()  # type: ignore[attr-defined]
    row = next(line for line in text.splitlines() if "task-a" in line)
    for cell in ("x", "4", "7", "1:35", "12,345", "0.2500", "0.625"):
        assert cell in row
    assert "task-b" in text and "0/3 done" in text and "ETA -" in text


def test_eta_follows_the_pace_of_episodes_that_ran() -> None:
    live = LiveProgress(Console(file=io.StringIO()))
    live.tally.total, live.tally.started = 10, 0.0
    live.tally.finished, live.tally.skipped = 2, 4  # 2 ran in 100 s; 4 remain
    assert live.tally.eta_s(100.0) == 200.0


def test_make_observer_picks_live_on_a_terminal_and_json_lines_otherwise() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(make_observer(terminal, log_json=False), LiveProgress)
    assert isinstance(make_observer(terminal, log_json=True), JsonLinesProgress)
    assert isinstance(make_observer(Console(file=io.StringIO()), log_json=False),
                      JsonLinesProgress)
