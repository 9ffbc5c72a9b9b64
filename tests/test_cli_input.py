"""Bad input to the command line: one line saying what was wrong and how to fix it, a
non-zero exit, no traceback, and nothing left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog
from helpers import TOY_TASK, copy_toy_task
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.records import load_result


def invoke(*args: str) -> tuple[int, str]:
    """Run `rdbench args`; return the exit code and what it printed on stderr."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.stderr


def assert_one_line_error(stderr: str, *words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], stderr


@pytest.mark.parametrize("command", [
    ["demo", "--task", "no-such-task"],
    ["grade", "somewhere", "--task", "no-such-task"],
    ["run", "--task", "no-such-task"],
])
def test_unknown_task_is_one_line_listing_the_known_ones(
    command: list[str], tmp_path: Path
) -> None:
    code, stderr = invoke(*command, *(["--out", str(tmp_path / "out")]
                                      if command[0] != "grade" else []))
    assert code == 1
    assert_one_line_error(stderr, "Unknown task 'no-such-task'", "known tasks:", "tabular-credit")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--max-time", "-5", "--max-time must be a positive number of seconds, got -5"),
    ("--max-time", "0", "--max-time must be a positive number of seconds, got 0"),
    ("--max-time", "nan", "--max-time must be a positive number of seconds, got nan"),
    ("--max-cost", "-1", "--max-cost must be a positive number of dollars, got -1"),
    ("--max-cost", "0", "--max-cost must be a positive number of dollars, got 0"),
    ("--max-steps", "0", "--max-steps must be at least 1, got 0"),
    ("--max-tokens-total", "-3", "--max-tokens-total must be at least 1, got -3"),
    ("--max-tokens", "0", "--max-tokens must be at least 1, got 0"),
    ("--episodes", "0", "--episodes must be at least 1, got 0"),
    ("--parallel", "0", "--parallel must be at least 1, got 0"),
    ("--tools", ",", "--tools ',' names no tool"),
    ("--tools", "bash,teleport", "Unknown tools ['teleport'] in --tools"),
    ("--sandbox", "podman", "--sandbox 'podman' is not a sandbox backend; use one of: auto"),
    ("--agent", "no-such-agent", "Unknown agent 'no-such-agent'"),
    ("--agent-option", "novalue", "--agent-option takes KEY=VALUE, got 'novalue'"),
])
def test_out_of_range_option_is_refused_before_anything_starts(
    option: str, value: str, said: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stderr = invoke("run", "--task", str(TOY_TASK), "--out", str(out), option, value)
    assert code == 1
    assert_one_line_error(stderr, said)
    assert not out.exists()  # no episode folder, no empty transcript


def test_out_naming_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "records.txt"
    a_file.write_text("mine")
    code, stderr = invoke("run", "--task", str(TOY_TASK), "--out", str(a_file))
    assert code == 1
    assert_one_line_error(stderr, f"--out {a_file} is a file, not a folder")
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("out", ["/proc/nope", "/sys/kernel/x"])
def test_out_that_cannot_be_made_or_written_is_refused(out: str) -> None:
    code, stderr = invoke("run", "--task", str(TOY_TASK), "--out", out)
    assert code == 1
    assert_one_line_error(stderr, f"--out {out}: cannot make or write this folder",
                          "name a folder you can write")
    assert not Path(out).exists()


def test_demo_out_that_cannot_be_written_is_refused() -> None:
    code, stderr = invoke("demo", "--task", "tabular-credit", "--out", "/proc/nope")
    assert code == 1
    assert_one_line_error(stderr, "--out /proc/nope: cannot make or write this folder")


@pytest.mark.parametrize("missing", ["grader/score.py", "solution"])
def test_task_check_refuses_a_task_without_a_grader_or_a_solution(
    missing: str, tmp_path: Path
) -> None:
    task = copy_toy_task(tmp_path)
    target = task / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    code, stderr = invoke("task", "check", str(task))
    assert code == 1
    assert_one_line_error(stderr, f"{target}", "missing; every task needs")


def test_task_check_accepts_every_shipped_task_and_the_fixture() -> None:
    from rdbench.resources import environments_dir

    for folder in [TOY_TASK, *sorted(p.parent for p in environments_dir().glob("*/task.toml"))]:
        result = CliRunner().invoke(app, ["task", "check", str(folder)])
        assert result.exit_code == 0, (folder, result.output)


@pytest.mark.parametrize("flags", [["--log-json"], ["-v"], ["--verbose", "--log-json"]])
def test_global_flags_are_taken_after_the_subcommand(flags: list[str]) -> None:
    result = CliRunner().invoke(app, ["task", "check", str(TOY_TASK), *flags])
    assert result.exit_code == 0, result.output
    last = structlog.get_config()["processors"][-1]
    json_wanted = "--log-json" in flags
    assert isinstance(last, structlog.processors.JSONRenderer) == json_wanted


@pytest.mark.bwrap
def test_agent_is_not_closed_before_its_episode_starts(tmp_path: Path) -> None:
    """The CLI checks the agent's options without closing an agent it never started; the
    episode's agent is closed once, after reset()."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "run", "--task", str(TOY_TASK), "--out", str(out), "--sandbox", "bwrap",
        "--agent", "agents_for_tests:ClosesOnlyWhenStarted",
    ])
    assert result.exit_code == 0, result.output + result.stderr
    (record,) = out.glob("*/result.json")
    assert load_result(record).outcome == "submitted"
