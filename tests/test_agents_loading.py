"""Finding agents: built-ins, `rdbench.agents` entry points, `module:Class`; `rdbench agents`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from rdbench.agents import AgentConfigError, agent_factory, installed_agents, make_agent
from rdbench.agents.scripted import NullAgent
from rdbench.cli import app

PLUGIN = '''
from rdbench.agents import Usage

class PluginAgent:
    """An agent from a third-party package."""

    name = "plugin"

    def reset(self, info, observation):
        pass

    def act(self, observation):
        return {"tool": "submit", "input": {}}

    def usage(self):
        return Usage()
'''


@pytest.fixture
def plugin_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package declaring an agent in the `rdbench.agents` entry points, on sys.path."""
    (tmp_path / "rdbench_plugin_demo.py").write_text(PLUGIN)
    info = tmp_path / "rdbench_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rdbench-plugin-demo\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[rdbench.agents]\nplugin = rdbench_plugin_demo:PluginAgent\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield


def test_built_ins_are_listed_by_short_name() -> None:
    names = {entry.name for entry in installed_agents()}
    assert {"claude", "oracle", "null"} <= names
    assert agent_factory("null") is NullAgent


def test_entry_point_agent_is_found_and_listed(plugin_installed: None) -> None:
    listed = {entry.name: entry for entry in installed_agents()}
    assert listed["plugin"].source == "rdbench-plugin-demo"
    assert listed["plugin"].summary == "An agent from a third-party package."
    assert make_agent("plugin").act("")["tool"] == "submit"


def test_module_colon_class_is_imported() -> None:
    made = make_agent("agents_for_tests:Scripted", command="ls")
    assert made.name == "scripted"


def test_unknown_agent_says_what_is_installed() -> None:
    with pytest.raises(AgentConfigError, match=r"Unknown agent 'nope'.*oracle"):
        make_agent("nope")


def test_missing_module_says_how_to_fix() -> None:
    with pytest.raises(AgentConfigError, match="PYTHONPATH"):
        make_agent("no_such_module_here:Agent")


def test_unknown_option_names_the_options_the_agent_takes() -> None:
    with pytest.raises(AgentConfigError, match=r"it takes: command, crash_after"):
        make_agent("agents_for_tests:Scripted", model="x")
    with pytest.raises(AgentConfigError, match="no options"):
        make_agent("null", model="x")


def test_agents_command_lists_installed_agents(plugin_installed: None) -> None:
    try:
        result = CliRunner().invoke(app, ["agents"])
    finally:
        structlog.reset_defaults()
    assert result.exit_code == 0, result.output
    for name in ("claude", "oracle", "null", "plugin"):
        assert name in result.output
    for spec in ("notepad(max_chars=20000)", "summary(at=0.7,keep=1)", "successor", "team("):
        assert spec in result.output
