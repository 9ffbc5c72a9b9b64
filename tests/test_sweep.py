"""Sweeps: arms in the run configuration, the sweep file's validation, the paired-effect
statistics, and a whole sweep on a real task (bwrap) against a fake model server on loopback
whose "good" model truly raises the score: the report shows that arm ahead with an interval
that excludes 0, and running the sweep again reruns nothing."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fake_servers import FakeServer, Reply, anthropic_message, tool_use
from report_fixtures import make_result
from typer.testing import CliRunner

from rdbench.agents.scaffold import scaffold_names
from rdbench.calls import parse_call
from rdbench.cli import _agent_choices, app
from rdbench.experiments.effects import analyze, paired_differences, points_of
from rdbench.experiments.report import load_experiment
from rdbench.records import EpisodeResult
from rdbench.suite import AgentChoice, RunConfig, expand
from rdbench.sweep import SweepError, load_sweep, parse_sweep
from rdbench.task import get_task

TASK = "scaling-law"  # the fastest shipped task to grade: its grader only reads answer.json
SOLUTION = (get_task(TASK).root / "solution" / "answer.json").read_text(encoding="utf-8")


class ScaffoldTaker:
    """A stand-in agent factory that takes a scaffold (as claude and openai do)."""

    def __init__(self, scaffold: str | None = None, model: str | None = None):
        self.scaffold = scaffold


def _two_arms(**extra: Any) -> dict[str, Any]:
    return {"tasks": [TASK], "baseline": "base", **extra,
            "arm": [{"name": "base", "agent": "oracle"},
                    {"name": "good", "agent": "oracle", "budget": {"steps": 5}}]}


# --- arms in the run configuration ----------------------------------------------------

def test_an_arm_gives_its_episodes_its_label_scaffold_tools_and_budget() -> None:
    arm = AgentChoice(name="claude", options={"model": "m/x"}, label="note pad",
                      scaffold="plain", tools=["bash", "submit"], budget={"steps": 7})
    config = RunConfig(tasks=[TASK], agents=[AgentChoice(name="oracle"), arm], runs=2,
                       budget={"steps": 20, "time_s": 60}, tools=["bash"])
    specs = expand(config, "run-x")
    plain_spec, armed = specs[0], specs[1]
    assert armed.arm == "note pad" and armed.scaffold == "plain"
    assert armed.budget == {"steps": 7, "time_s": 60} and armed.tools == ["bash", "submit"]
    assert plain_spec.arm is None and plain_spec.tools == ["bash"]
    assert plain_spec.budget == {"steps": 20, "time_s": 60}
    assert armed.episode_id.startswith(f"{TASK}__note-pad__seed0__")  # folder-safe label
    assert plain_spec.episode_id.startswith(f"{TASK}__oracle__seed0__")
    assert armed.configuration["scaffold"] == "plain"


def test_a_run_without_arms_keeps_its_saved_configuration_and_hash() -> None:
    config = RunConfig(tasks=[TASK], agents=[AgentChoice(name="claude", options={"a": 1})])
    saved = json.loads(config.model_dump_json())
    assert saved["agents"] == [{"name": "claude", "options": {"a": 1}}]  # as before arms
    assert RunConfig.model_validate(saved) == config
    armed = RunConfig(tasks=[TASK], agents=[AgentChoice(name="claude", options={"a": 1},
                                                         label="x")])
    assert armed.outcome_hash() != config.outcome_hash()


def test_arm_labels_are_unique_and_scaffolds_canonical() -> None:
    with pytest.raises(ValueError, match=r"arm labels \['a'\] are given twice"):
        RunConfig(tasks=[TASK], agents=[AgentChoice(name="oracle", label="a"),
                                        AgentChoice(name="null", label="a")])
    with pytest.raises(ValueError, match="no-such-scaffold"):
        AgentChoice(name="claude", scaffold="no-such-scaffold")


def test_run_lifts_a_scaffold_out_of_the_agents_options() -> None:
    taker = f"{__name__}:ScaffoldTaker"
    own, shared = _agent_choices([f"{taker} scaffold=plain model=x", taker], {},
                                 scaffold=None), None
    assert own[0].scaffold == "plain" and own[0].options == {"model": "x"}
    assert own[1].scaffold is None
    shared = _agent_choices([taker], {"model": "y"}, scaffold="plain")
    assert shared[0].scaffold == "plain" and shared[0].options == {"model": "y"}


def test_run_refuses_a_scaffold_for_an_agent_that_takes_none(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--task", TASK, "--agent", "oracle",
                                      "--scaffold", "plain", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "Agent 'oracle' takes no scaffold" in result.output
    assert not (tmp_path / "r").exists()
    bad = CliRunner().invoke(app, ["run", "--task", TASK, "--agent",
                                   f"{__name__}:ScaffoldTaker", "--scaffold", "nope(",
                                   "--out", str(tmp_path / "r")])
    assert bad.exit_code == 1 and "scaffold 'nope('" in bad.output


# --- the sweep file -------------------------------------------------------------------

def test_a_valid_sweep_becomes_one_run_of_every_arm() -> None:
    sweep = parse_sweep(_two_arms(repetitions=3, budget={"time_s": 300}, tools=["bash"]))
    config = sweep.run_config()
    assert [agent.label for agent in config.agents] == ["base", "good"]
    assert config.runs == 3 and config.budget == {"time_s": 300.0}
    assert config.agents[1].budget == {"steps": 5}
    assert len(expand(config, "run")) == 6


@pytest.mark.parametrize(("change", "expected"), [
    ({"tasx": ["x"]}, r"tasx: unknown key; the keys allowed here are name, tasks, "),
    ({"baseline": "nope"}, r"baseline 'nope' names no arm; set baseline to one of the "
                           r"\[\[arm\]\] names: base, good"),
    ({"arm": [{"name": "base", "agent": "oracle", "modle": "x"}]},
     r'arm\[1\] \(name "base"\)\.modle: unknown key; the keys allowed here are name, agent, '
     r"options, scaffold, tools, budget"),
    ({"budget": {"step": 3}}, r"budget\.step: unknown key; the keys allowed here are steps, "
                              r"time_s, tokens, cost_usd"),
    ({"arm": [{"name": "base", "agent": "oracle"}, {"name": "base", "agent": "null"}]},
     r"arms \['base'\] are named twice"),
    ({"arm": [{"name": "base", "agent": "claude", "scaffold": "no-such"}]},
     r'arm\[1\] \(name "base"\)\.scaffold: .*no-such'),
    ({"tools": ["bash", "shell(x=1)"]}, r"tools: Unknown tools \['shell'\]"),
    ({"tools": ["bash(max_out=1)"]}, r"tools: bash has no option 'max_out'.*max_output"),
    ({"arm": [{"name": "a/b", "agent": "oracle"}]}, r"arm name 'a/b': use letters"),
    ({"repetitions": 0}, r"repetitions: Input should be greater than or equal to 1"),
])
def test_a_bad_sweep_is_an_error_naming_what_to_fix(change: dict[str, Any],
                                                    expected: str) -> None:
    data = {**_two_arms(), **change}
    if "arm" in change and "baseline" not in change:
        data["baseline"] = change["arm"][0]["name"]
    with pytest.raises(SweepError, match=expected):
        parse_sweep(data, "sweep.toml")


EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_example_sweeps_are_valid(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    named = [parse_call(arm["scaffold"]).name for arm in data["arm"] if "scaffold" in arm]
    assert set(named) <= set(scaffold_names())
    sweep = load_sweep(path)
    assert sweep.baseline in sweep.arm_names and len(sweep.arm_names) >= 2
    assert len(expand(sweep.run_config(), "run")) == (
        len(sweep.tasks) * len(sweep.arm_names) * sweep.repetitions)


def test_sweep_refuses_a_scaffold_for_oracle_before_running(tmp_path: Path) -> None:
    file = tmp_path / "s.toml"
    file.write_text(f'tasks = ["{TASK}"]\nbaseline = "a"\n[[arm]]\nname = "a"\n'
                    'agent = "oracle"\nscaffold = "plain"\n')
    result = CliRunner().invoke(app, ["sweep", str(file), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "takes no scaffold" in result.output and "in the arm 'a'" in result.output
    assert not (tmp_path / "out").exists()


def test_a_team_too_large_for_the_machine_is_refused_naming_the_team(
    server: FakeServer, tmp_path: Path
) -> None:
    file = tmp_path / "s.toml"
    file.write_text(f'tasks = ["{TASK}"]\nbaseline = "one"\n'
                    f'[[arm]]\nname = "one"\nagent = "claude"\n'
                    f'options = {{ base_url = "{server.url}" }}\n'
                    f'[[arm]]\nname = "many"\nagent = "claude"\nscaffold = "team(workers=64)"\n'
                    f'options = {{ base_url = "{server.url}" }}\n')
    result = CliRunner().invoke(app, ["sweep", str(file), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"task {TASK} in a team of 64 workers" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists() and server.requests == []


# --- the statistics -------------------------------------------------------------------

def _armed(arm: str, task: str, seed: int, score: float | None) -> EpisodeResult:
    outcome = "submitted" if score is not None else "infrastructure_error"
    result = make_result(task, "claude", seed, outcome, score, model="m")
    return result.model_copy(update={"arm": arm,
                                     "episode_id": f"{task}__{arm}__seed{seed}__x"})


def test_a_paired_effect_sees_a_small_steady_gain_that_seeds_hide() -> None:
    seeds = [0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4]  # seeds vary far more than the gain
    results = [_armed("base", "t", i, s) for i, s in enumerate(seeds)]
    results += [_armed("better", "t", i, s + 0.05) for i, s in enumerate(seeds)]
    experiment = analyze(results, baseline="base", arms=["base", "better"])
    base, better = experiment.cell("base", "t"), experiment.cell("better", "t")
    assert base is not None and better is not None and base.high is not None
    assert better.low is not None and better.low < base.high  # the means' intervals overlap
    effect = experiment.overall("better")
    assert effect is not None and effect.pairs == 8
    assert effect.mean == pytest.approx(0.05) and effect.excludes_zero


def test_an_effect_whose_interval_includes_zero() -> None:
    diffs = [0.3, -0.2, 0.1, -0.3, 0.2, -0.1]
    results = [_armed("base", "t", i, 0.5) for i in range(6)]
    results += [_armed("other", "t", i, 0.5 + d) for i, d in enumerate(diffs)]
    effect = analyze(results, baseline="base").overall("other")
    assert effect is not None and effect.mean == pytest.approx(0.0)
    assert effect.low is not None and effect.high is not None
    assert effect.low < 0 < effect.high and not effect.excludes_zero


def test_pairs_need_both_scores_and_tasks_count_alike() -> None:
    results = [_armed("base", "a", 0, 0.2), _armed("base", "a", 1, 0.4),
               _armed("x", "a", 0, 0.5), _armed("x", "a", 1, None),  # no score: no pair
               _armed("x", "a", 2, 0.9),  # the baseline has no seed 2: no pair
               *(_armed("base", "b", i, 0.0) for i in range(4)),
               *(_armed("x", "b", i, 1.0) for i in range(4))]
    points = points_of(results)
    assert paired_differences([p for p in points if p.arm == "x" and p.task_id == "a"],
                              [p for p in points if p.arm == "base"]) == [pytest.approx(0.3)]
    experiment = analyze(results, baseline="base")
    overall = experiment.overall("x")
    assert overall is not None and overall.pairs == 5
    assert overall.mean == pytest.approx((0.3 + 1.0) / 2)  # the mean of the tasks' effects
    cell = experiment.cell("x", "a")
    assert cell is not None and cell.n == 2 and cell.not_scored == 1


# --- a whole sweep ---------------------------------------------------------------------

def _scripted(request: dict[str, Any]) -> Reply:
    """The good model writes the task's known-good answer, then submits; any other model
    submits at once."""
    answered = any(block.get("type") == "tool_result"
                   for message in request.get("messages", [])
                   if isinstance(message.get("content"), list)
                   for block in message["content"])
    if request.get("model") == "fake-good" and not answered:
        return anthropic_message(tool_use("write_file", {"path": "answer.json",
                                                         "content": SOLUTION}))
    return anthropic_message(tool_use("submit"))


@pytest.fixture
def server(server: FakeServer) -> FakeServer:
    """The fake model API, scripted for the sweep's two models."""
    server.add(*[_scripted] * 200)
    return server


@pytest.mark.bwrap
def test_a_sweep_shows_the_better_arm_and_a_rerun_runs_nothing(
    server: FakeServer, tmp_path: Path
) -> None:
    file = tmp_path / "models.toml"
    file.write_text(
        f'name = "good vs base"\ntasks = ["{TASK}"]\nrepetitions = 3\nsandbox = "bwrap"\n'
        'baseline = "base"\ntools = ["write_file", "submit"]\n[budget]\nsteps = 5\n'
        f'[[arm]]\nname = "base"\nagent = "claude"\n'
        f'options = {{ model = "fake-base", base_url = "{server.url}" }}\n'
        f'[[arm]]\nname = "good"\nagent = "claude"\n'
        f'options = {{ model = "fake-good", base_url = "{server.url}" }}\n')
    out = tmp_path / "runs" / "models"
    first = CliRunner().invoke(app, ["sweep", str(file), "-o", str(out)])
    assert first.exit_code == 0, first.output
    assert "6 episode(s): 6 run now, 0 skipped" in first.output

    experiment = load_experiment(out)
    assert experiment.arms == ["base", "good"] and experiment.baseline == "base"
    effect = experiment.overall("good")
    assert effect is not None and effect.pairs == 3
    assert effect.mean is not None and effect.mean > 0.9 and effect.excludes_zero
    good, base = experiment.cell("good", TASK), experiment.cell("base", TASK)
    assert good is not None and base is not None and good.n == base.n == 3
    assert good.mean is not None and base.mean is not None and good.mean > base.mean
    report = (out / "report.md").read_text()
    row = re.search(r"\| good \| all tasks \| 3 \| \+(\S+) \[(\S+), (\S+)\] \| better than "
                    r"baseline \|", report)
    assert row is not None and float(row.group(2).rstrip(",")) > 0
    for name in ("effects.png", "score-vs-time.png"):
        assert (out / "plots" / name).read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    assert "Experiment: good vs base" in page and "better than baseline" in page

    asked = len(server.requests)
    again = CliRunner().invoke(app, ["sweep", str(file), "-o", str(out)])
    assert again.exit_code == 0, again.output
    assert "6 episode(s): 0 run now, 6 skipped" in again.output
    assert len(server.requests) == asked  # no model call: nothing ran again

    (out / "report.md").unlink()
    only = CliRunner().invoke(app, ["sweep", str(file), "-o", str(out), "--report-only"])
    assert only.exit_code == 0 and (out / "report.md").read_text() == report
    assert "episode(s)" not in only.output  # nothing ran, nothing was skipped
    file.write_text(file.read_text().replace("repetitions = 3", "repetitions = 4"))
    changed = CliRunner().invoke(app, ["sweep", str(file), "-o", str(out)])
    assert changed.exit_code == 1 and "holds a run of another grid: runs: 3" in changed.output

    site = CliRunner().invoke(app, ["leaderboard", str(out), "--experiment", str(out),
                                    "-o", str(tmp_path / "site")])
    assert site.exit_code == 0, site.output
    index = (tmp_path / "site" / "index.html").read_text()
    assert '<h2 id="experiments">Experiments</h2>' in index and "good vs base" in index
