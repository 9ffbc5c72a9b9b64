"""The run summary (`rdbench show`): counts, means, bootstrap intervals, failures by kind."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import pytest
from report_fixtures import make_result, write_run
from rich.console import Console
from typer.testing import CliRunner

from rdbench import cli
from rdbench.report import bootstrap_interval, load_run, summarize

A_X_SCORES = [0.2, 0.5, 0.9, 0.1, 0.3]  # submitted three times, agent_error, limit


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    results = [
        make_result("task-a", "x", 0, "submitted", 0.2, cost=0.10, working_s=10),
        make_result("task-a", "x", 1, "submitted", 0.5, cost=0.20, working_s=20),
        make_result("task-a", "x", 2, "submitted", 0.9, cost=0.30, working_s=30),
        make_result("task-a", "x", 3, "agent_error", 0.1, cost=0.40, working_s=40),
        make_result("task-a", "x", 4, "limit", 0.3, cost=0.50, working_s=50),
        make_result("task-a", "x", 5, "infrastructure_error", None, cost=9.0, working_s=99),
        make_result("task-a", "y", 0, "no_action", 0.0, cost=0.0, working_s=5),
        make_result("task-b", "x", 0, "submitted", 1.0, cost=0.01, working_s=7),
        make_result("task-b", "x", 1, "submitted", 0.8, cost=0.03, working_s=9),
        make_result("task-b", "claude", 0, "submitted", 0.6, model="m-1"),
    ]
    return write_run(tmp_path / "run", results,
                     unfinished=["task-b__x__seed2-abcd1234", "task-c__z__seed0-ffff0000"])


def exact_bootstrap_quantiles(values: list[float]) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of the exact bootstrap distribution of the mean: every one
    of the n^n equally likely resamples, enumerated (no sampling at all)."""
    n = len(values)
    means = sorted(sum(pick) / n for pick in itertools.product(values, repeat=n))
    cuts = statistics.quantiles(means, n=40, method="inclusive")
    return cuts[0], cuts[-1]


def test_rows_count_scored_episodes_and_failures_by_kind(run_folder: Path) -> None:
    records = load_run(run_folder)
    rows = {(row.task_id, row.agent): row for row in summarize(records.results,
                                                               records.unfinished)}
    assert sorted(rows) == [("task-a", "x"), ("task-a", "y"), ("task-b", "claude-m-1"),
                            ("task-b", "x"), ("task-c", "z")]
    a_x = rows[("task-a", "x")]
    assert a_x.n == 5  # the infrastructure error is never a score
    assert a_x.mean == pytest.approx(statistics.fmean(A_X_SCORES))
    assert a_x.best == 0.9
    assert a_x.mean_cost_usd == pytest.approx(0.30)  # the infrastructure error's $9 left out
    assert a_x.mean_working_s == pytest.approx(30)
    assert a_x.submitted == 3
    assert a_x.failures == {"agent_error": 1, "infrastructure_error": 1, "limit": 1,
                            "no_action": 0}
    assert rows[("task-a", "y")].failures["no_action"] == 1
    assert rows[("task-b", "x")].unfinished == 1
    assert rows[("task-c", "z")].n == 0 and rows[("task-c", "z")].unfinished == 1


def test_interval_matches_the_exact_bootstrap_and_brackets_the_mean(run_folder: Path) -> None:
    records = load_run(run_folder)
    a_x = next(row for row in summarize(records.results) if row.agent == "x")
    assert a_x.low is not None and a_x.high is not None and a_x.mean is not None
    assert a_x.low < a_x.mean < a_x.high
    low, high = exact_bootstrap_quantiles(A_X_SCORES)
    assert a_x.low == pytest.approx(low, abs=0.02)
    assert a_x.high == pytest.approx(high, abs=0.02)


def test_interval_is_reproducible_and_absent_for_one_episode() -> None:
    values = [0.1, 0.7, 0.4, 0.9]
    assert bootstrap_interval(values) == bootstrap_interval(values)
    assert bootstrap_interval([0.5]) is None
    single = summarize([make_result("t", "a", 0, "submitted", 0.5)])[0]
    assert (single.n, single.mean, single.low, single.high) == (1, 0.5, None, None)


def test_skipped_episodes_are_counted_when_the_run_says_so() -> None:
    results = [make_result("t", "a", seed, "submitted", 0.5) for seed in range(3)]
    row = summarize(results, skipped=[results[0].episode_id])[0]
    assert (row.n, row.skipped) == (3, 1)


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=200))


def test_show_prints_the_table(run_folder: Path, wide_console: None) -> None:
    result = CliRunner().invoke(cli.app, ["show", str(run_folder)])
    assert result.exit_code == 0, result.output
    a_x = next(row for row in summarize(load_run(run_folder).results) if row.agent == "x")
    line = next(line for line in result.output.splitlines() if "task-a" in line and " x " in line)
    assert f"0.400 [{a_x.low:.3f}, {a_x.high:.3f}]" in line
    assert "0.900" in line and "0.3000" in line and "30.0" in line
    assert "agent error 1" in line and "infrastructure 1" in line and "limit 1" in line
    assert "2 unfinished episode(s)" in result.output


def test_show_json_gives_the_rows(run_folder: Path) -> None:
    result = CliRunner().invoke(cli.app, ["show", str(run_folder), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    expected = summarize(load_run(run_folder).results, load_run(run_folder).unfinished)
    assert rows == [row.model_dump() for row in expected]
    assert rows[0]["failures"]["infrastructure_error"] == 1


def test_show_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["show", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "not a run folder" in result.output


def test_show_names_an_unreadable_result_and_counts_the_rest(run_folder: Path,
                                                              wide_console: None) -> None:
    broken = run_folder / "task-a__x__seed9-abcd1234"
    broken.mkdir()
    (broken / "result.json").write_text('{"schema_version": 99}')
    result = CliRunner().invoke(cli.app, ["show", str(run_folder)])
    assert result.exit_code == 0, result.output
    assert "not counted" in result.output and "schema_version 99" in result.output
    assert "0.400 [" in result.output
