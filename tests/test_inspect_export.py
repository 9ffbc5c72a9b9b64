"""`rdbench export inspect RUN -o logs/`: real episodes (a Claude episode through the real
`anthropic` SDK against the fake Messages API on loopback, and an oracle episode, both on the
scaling-law task in bwrap) exported as Inspect eval logs, read back with Inspect's own
`read_eval_log`: every action with its input and the output the agent was shown, in order;
the model's text and thinking; the final score (normalized and raw), the validation scores
and the usage. A run gives one log per episode, `inspect view` lists them, and bad input is a
one-line error naming the file."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_servers import (
    FakeServer,
    chat_completion,
    fake_server,
    function_call,
    text,
    thinking_reply,
    tool_use,
)
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.records import ActionEvent, ObservationEvent, ScoreEvent, load_result
from rdbench.resources import environments_dir
from rdbench.runner import EpisodeSpec, run_episode
from rdbench.task import load_task
from rdbench.transcript import read_events

inspect_log = pytest.importorskip("inspect_ai.log")

TASK = environments_dir() / "scaling-law"  # grading reads answer.json only: fast
THOUGHT = "answer.json holds width 256; check it, then score."
SAID = "Let me look at the answer file and a file that is not there."
ANSWER = json.dumps({"validation": {"width": 32, "steps": 7262, "predicted_loss": 0.0345},
                     "test": {"width": 64, "steps": 20829, "predicted_loss": 0.023}})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, bwrap_rootfs: str) -> Path:
    """A run folder with a Claude episode (thinking, text, two calls in one reply, a tool
    error, an edit, a validation score, submit) and an oracle episode, both finished."""
    folder = tmp_path_factory.mktemp("run")
    task = load_task(TASK)
    with pytest.MonkeyPatch.context() as patch, fake_server() as server:
        patch.setenv("ANTHROPIC_API_KEY", "test-key")
        server.add(
            thinking_reply(THOUGHT, text(SAID), tool_use("bash", {"command": "cat answer.json"}),
                           tool_use("read_file", {"path": "missing.txt"})),
            thinking_reply("Write a better answer.",
                           tool_use("write_file", {"path": "answer.json", "content": ANSWER})),
            thinking_reply("Score it.", tool_use("score")),
            thinking_reply("Good enough; submit.", text("Submitting."), tool_use("submit")),
        )
        claude = EpisodeSpec(task=task, agent="claude", sandbox="bwrap", seed=5, run_id="exp",
                             agent_options={"base_url": server.url, "thinking": 2048,
                                            "max_tokens": 4096})
        assert run_episode(claude, folder).outcome == "submitted"
    oracle = EpisodeSpec(task=task, agent="oracle", sandbox="bwrap", run_id="exp")
    assert run_episode(oracle, folder).outcome == "submitted"
    return folder


@pytest.fixture(scope="module")
def logs(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported with the command line, as .eval logs."""
    out = tmp_path_factory.mktemp("logs")
    done = CliRunner().invoke(app, ["export", "inspect", str(run), "-o", str(out)])
    assert done.exit_code == 0, done.output
    return out


def episode(run: Path, agent: str) -> Path:
    (folder,) = [path for path in run.iterdir() if f"__{agent}__" in path.name]
    return folder


def read_log(logs: Path, folder: Path) -> Any:
    return inspect_log.read_eval_log(str(logs / f"{folder.name}.eval"))


def calls_and_results(messages: list[Any]) -> list[tuple[str, dict[str, Any], str | None]]:
    """(tool, input, the tool message's text answering it, or None) for every tool call of
    the assistant messages, in order."""
    answers = {message.tool_call_id: message.text for message in messages
               if message.role == "tool"}
    return [(call.function, call.arguments, answers.get(call.id))
            for message in messages if message.role == "assistant"
            for call in message.tool_calls or []]


def actions_and_outputs(folder: Path) -> list[tuple[str, dict[str, Any], str | None]]:
    """(tool, input, the output the agent was shown, or None) for every action recorded."""
    pairs: list[tuple[str, dict[str, Any], str | None]] = []
    for event in read_events(folder):
        if isinstance(event, ActionEvent):
            pairs.append((str(event.tool), dict(event.input or {}), None))
        elif isinstance(event, ObservationEvent):
            tool, arguments, _ = pairs[-1]
            pairs[-1] = (tool, arguments, event.shown if event.shown is not None else event.text)
    return pairs


@pytest.mark.bwrap
def test_every_action_and_its_output_appear_in_the_messages_in_order(
    run: Path, logs: Path
) -> None:
    folder = episode(run, "claude")
    sample = read_log(logs, folder).samples[0]
    recorded = actions_and_outputs(folder)
    assert [tool for tool, _, _ in recorded] == ["bash", "read_file", "write_file", "score",
                                                 "submit"]
    assert calls_and_results(sample.messages) == recorded
    assert "predicted_loss" in str(recorded[0][2])  # the cat printed the file
    tool_messages = [message for message in sample.messages if message.role == "tool"]
    assert tool_messages[1].error is not None  # read_file of a missing file: a tool error
    roles = [message.role for message in sample.messages]
    assert roles[:2] == ["system", "user"] and roles[2] == "assistant"
    assert "submit" in sample.messages[0].text  # the system prompt
    assert sample.messages[1].text.startswith(load_task(TASK).instructions.splitlines()[0])


@pytest.mark.bwrap
def test_the_models_text_and_thinking_are_in_the_assistant_turns(run: Path, logs: Path) -> None:
    sample = read_log(logs, episode(run, "claude")).samples[0]
    turns = [message for message in sample.messages if message.role == "assistant"]
    thinking = [[part.reasoning for part in turn.content if part.type == "reasoning"]
                for turn in turns]
    assert thinking == [[THOUGHT], ["Write a better answer."], ["Score it."],
                        ["Good enough; submit."]]
    assert [turn.text for turn in turns] == [SAID, "", "", "Submitting."]
    model_events = [event for event in sample.events if event.event == "model"]
    assert len(model_events) == 4 and model_events[0].output.usage.input_tokens == 100


@pytest.mark.bwrap
def test_the_final_score_validation_scores_and_usage_round_trip(run: Path, logs: Path) -> None:
    folder = episode(run, "claude")
    result = load_result(folder)
    eval_log = read_log(logs, folder)
    (sample,) = eval_log.samples
    score = sample.scores["rdbench"]
    assert result.normalized_score is not None and result.raw_score is not None
    assert score.value == pytest.approx(result.normalized_score)
    assert score.metadata["raw_score"] == pytest.approx(result.raw_score)
    assert score.metadata["valid"] is True and score.explanation == result.message
    assert eval_log.results.scores[0].metrics["mean"].value == pytest.approx(
        result.normalized_score)
    (usage,) = sample.model_usage.values()
    assert (usage.input_tokens, usage.output_tokens) == (result.usage.input_tokens,
                                                         result.usage.output_tokens)
    assert usage.total_cost == pytest.approx(result.usage.cost_usd) and usage.input_tokens > 0
    assert eval_log.stats.model_usage == sample.model_usage
    (validation,) = [event for event in read_events(folder) if isinstance(event, ScoreEvent)]
    intermediate = [event.score for event in sample.events
                    if event.event == "score" and event.intermediate]
    assert [s.metadata["raw_score"] for s in intermediate] == [validation.raw_score]
    assert sample.metadata["validation_scores"][0]["raw_score"] == validation.raw_score
    spec = eval_log.eval
    assert (spec.task, spec.task_version) == ("rdbench/scaling-law", result.task_version)
    assert spec.model == f"claude/{next(iter(sample.model_usage)).split('/', 1)[1]}"
    assert spec.solver_args == result.agent_options and sample.metadata["seed"] == 5
    assert (sample.total_time, sample.working_time) == (result.elapsed_s, result.working_s)


@pytest.mark.bwrap
def test_an_agent_without_model_events_gets_turns_from_its_actions(
    run: Path, logs: Path
) -> None:
    folder = episode(run, "oracle")
    sample = read_log(logs, folder).samples[0]
    assert sample.messages[0].role == "user"  # the briefing the agent was shown
    assert "Tools:" in sample.messages[0].text
    recorded = actions_and_outputs(folder)
    assert recorded[0][0] == "write_file" and recorded[-1][0] == "submit"
    assert calls_and_results(sample.messages) == recorded
    result = load_result(folder)
    assert sample.scores["rdbench"].value == pytest.approx(result.normalized_score)
    assert sample.model_usage == {}


@pytest.mark.bwrap
def test_a_run_gives_one_log_per_episode_in_either_format(
    run: Path, logs: Path, tmp_path: Path
) -> None:
    episodes = sorted(path.name for path in run.iterdir() if path.is_dir())
    assert sorted(path.stem for path in logs.glob("*.eval")) == episodes
    done = CliRunner().invoke(app, ["export", "inspect", str(run), "-o", str(tmp_path),
                                    "--format", "json"])
    assert done.exit_code == 0, done.output
    written = sorted(tmp_path.glob("*.json"))
    assert [path.stem for path in written] == episodes
    for path in written:
        assert inspect_log.read_eval_log(str(path)).samples[0].id == path.stem


@pytest.mark.bwrap
def test_an_openai_episode_with_a_scaffold_tool_and_an_unknown_tool(
    server: FakeServer, tmp_path: Path, bwrap_rootfs: str
) -> None:
    """The OpenAI wire format, a scaffold's own tool (answered without an env step) and a call
    of a tool that does not exist (a malformed action) each answer their call, in order."""
    server.add(
        chat_completion(function_call("notepad", {"content": "width 32"}),
                        function_call("bash", {"command": "echo hi"}), content="Note, look."),
        chat_completion(function_call("no_such_tool", {"x": 1})),
        chat_completion(function_call("submit")),
    )
    spec = EpisodeSpec(task=load_task(TASK), agent="openai", sandbox="bwrap",
                       scaffold="notepad", agent_options={"base_url": f"{server.url}/v1",
                                                          "model": "local-model"})
    assert run_episode(spec, tmp_path / "run").outcome == "submitted"
    done = CliRunner().invoke(app, ["export", "inspect", str(tmp_path / "run"), "-o",
                                    str(tmp_path / "logs")])
    assert done.exit_code == 0, done.output
    eval_log = read_log(tmp_path / "logs", tmp_path / "run" / spec.episode_id)
    calls = calls_and_results(eval_log.samples[0].messages)
    assert [(tool, arguments) for tool, arguments, _ in calls] == [
        ("notepad", {"content": "width 32"}), ("bash", {"command": "echo hi"}),
        ("no_such_tool", {"x": 1}), ("submit", {})]
    answers = [answer for _, _, answer in calls]
    assert answers[0] is not None and answers[0].startswith("Notepad saved")
    assert answers[1] is not None and "hi" in answers[1]
    assert answers[2] is not None and "no_such_tool" in answers[2] and answers[3] is None
    assert eval_log.eval.model == "openai/local-model"
    assert eval_log.eval.solver == "notepad(max_chars=20000)"


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    done = CliRunner().invoke(app, ["export", "inspect", str(tmp_path), "-o",
                                    str(tmp_path / "logs")])
    assert done.exit_code == 1
    assert done.output.count("\n") == 1 and "not an rdbench run folder" in done.output
    assert not (tmp_path / "logs").exists()


@pytest.mark.bwrap
def test_a_broken_record_is_a_one_line_error_naming_the_file(run: Path, tmp_path: Path) -> None:
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    result = episode(broken, "oracle") / "result.json"
    result.write_text(result.read_text()[:200])
    done = CliRunner().invoke(app, ["export", "inspect", str(broken), "-o", str(tmp_path / "o")])
    assert done.exit_code == 1 and done.output.count("\n") == 1, done.output
    assert str(result) in done.output
    assert not (tmp_path / "o").exists()  # nothing written for a run with a broken episode

    shutil.rmtree(broken)
    shutil.copytree(run, broken)
    transcript = episode(broken, "claude") / "transcript.jsonl"
    lines = transcript.read_text().splitlines()
    lines[2] = json.dumps({"type": "action", "step": "one"})
    transcript.write_text("\n".join(lines) + "\n")
    done = CliRunner().invoke(app, ["export", "inspect", str(broken), "-o", str(tmp_path / "o")])
    assert done.exit_code == 1 and done.output.count("\n") == 1, done.output
    assert f"{transcript}:3" in done.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def viewer(logs: Path) -> Iterator[str]:
    """`inspect view` serving the exported logs on a free loopback port; its base URL."""
    port = free_port()
    inspect = Path(sys.executable).with_name("inspect")
    process = subprocess.Popen(
        [str(inspect), "view", "--log-dir", str(logs), "--host", "127.0.0.1",
         "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(viewer: str) -> Any:
    """The viewer's listing of the log folder, once it answers (up to a minute)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return get(f"{viewer}/api/log-files")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.bwrap
def test_inspect_view_serves_the_exported_logs(viewer: str, logs: Path) -> None:
    listing = wait_for(viewer)
    names = sorted(Path(urllib.parse.urlparse(entry["name"]).path).name
                   for entry in listing["files"])
    assert names == sorted(path.name for path in logs.glob("*.eval"))
    assert {entry["task"] for entry in listing["files"]} == {"rdbench/scaling-law"}
    oracle = next(entry["name"] for entry in listing["files"] if "__oracle__" in entry["name"])
    shown = get(f"{viewer}/api/logs/{urllib.parse.quote(oracle, safe='')}")
    assert shown["status"] == "success"
    assert shown["results"]["scores"][0]["metrics"]["mean"]["value"] == pytest.approx(1.0,
                                                                                      abs=0.01)


def test_importing_rdbench_and_its_cli_does_not_import_inspect() -> None:
    code = ("import sys, rdbench, rdbench.cli; "
            "sys.exit('inspect_ai' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_an_infrastructure_failure_is_an_errored_sample_without_a_score(tmp_path: Path) -> None:
    from report_fixtures import make_result, write_run

    failed = make_result("scaling-law", "null", 0, "infrastructure_error", None)
    run = write_run(tmp_path / "run", [failed], unfinished=["scaling-law__null__seed1-ffff"])
    done = CliRunner().invoke(app, ["export", "inspect", str(run), "-o", str(tmp_path / "o")])
    assert done.exit_code == 0, done.output
    assert "left out 1 unfinished episode(s): scaling-law__null__seed1-ffff" in done.output
    (path,) = (tmp_path / "o").iterdir()
    eval_log = inspect_log.read_eval_log(str(path))
    assert eval_log.status == "error" and eval_log.error.message == "engine lost"
    (sample,) = eval_log.samples
    assert sample.scores is None and sample.error.message == "engine lost"
    assert sample.metadata["outcome"] == "infrastructure_error"


@pytest.mark.bwrap
@pytest.mark.browser
def test_inspect_views_web_app_shows_the_episode(
    viewer: str, run: Path, browser_binaries: tuple[str, str]
) -> None:
    """Inspect's own viewer, in headless Chromium, opens the Claude episode's log and shows
    its thinking, its text and its tool calls with their outputs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        wait_for(viewer)
        chrome.get(f"{viewer}/#/logs/{episode(run, 'claude').name}.eval")
        expected = [THOUGHT, SAID, "cat answer.json", "predicted_loss", "missing.txt"]
        deadline = time.monotonic() + 30
        while True:
            page = chrome.find_element("tag name", "body").text
            if all(text in page for text in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [text for text in expected if text not in page] == []
        problems = [entry["message"] for entry in chrome.get_log("browser")
                    if entry["level"] == "SEVERE" and "/api/flow" not in entry["message"]]
        assert problems == []  # (Inspect asks for a flow file a log folder need not have)
    finally:
        chrome.quit()
