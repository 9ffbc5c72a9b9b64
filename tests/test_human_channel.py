"""The channel of a person's sandbox: rdbench-score, rdbench-submit, rdbench-status and
rdbench-help from the shell of `rdbench run --agent human` (through tmux, both backends),
the server's refusal of anything else, and no channel in any other episode."""

from __future__ import annotations

import io
import json
import os
import re
import select
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from helpers import BACKENDS, copy_toy_task
from test_human_terminal import ANY_PROMPT, PROMPT, Tmux, _only_episode, _rdbench_run, _ready
from typer.testing import CliRunner

from rdbench.agents.grading_ticker import TEXT, GradingTicker
from rdbench.agents.human import DEADLINE_FILE
from rdbench.cli import app
from rdbench.env import RDEnv
from rdbench.human_channel import (
    MAX_REQUEST_BYTES,
    ChannelRequestError,
    ChannelServer,
    Request,
    parse_request,
)
from rdbench.records import load_result
from rdbench.sandbox.base import AGENT_UID, CHANNEL_DIR
from rdbench.transcript import read_transcript

# --- the server's request parsing ----------------------------------------------------------


@pytest.mark.parametrize("op", ["score", "submit", "status", "help"])
def test_each_operation_is_a_request(op: str) -> None:
    assert parse_request(json.dumps({"op": op}).encode()) == Request(op=op)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'{"op": "step"}', "Unknown operation 'step'"),
        (b'{"op": "bash", "command": "ls"}', "Unknown operation 'bash'"),
        (b'{"op": "score", "tool": "bash"}', "fields the channel does not take: tool"),
        (b'{"tool": "submit"}', "Unknown operation None"),
        (b'["score"]', "not a JSON object: list"),
        (b"score", "not one JSON object"),
        (b"\xff\xfe", "not one JSON object"),
        (b"", "not one JSON object"),
    ],
)
def test_anything_but_an_operation_is_refused_with_what_is_wrong(data: bytes, said: str) -> None:
    with pytest.raises(ChannelRequestError, match=said.replace("(", r"\(")):
        parse_request(data)


def test_an_oversize_request_is_refused() -> None:
    padded = json.dumps({"op": "help", "pad": "x" * MAX_REQUEST_BYTES}).encode()
    with pytest.raises(ChannelRequestError, match=f"larger than {MAX_REQUEST_BYTES} bytes"):
        parse_request(padded)


# --- the server on the host ------------------------------------------------------------------


def _ask(path: Path, data: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(15)
        client.connect(str(path))
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    answer = json.loads(reply)
    assert isinstance(answer, dict)
    return answer


@pytest.fixture
def served() -> tuple[ChannelServer, list[str]]:
    """A channel server whose handler records the operations it was given."""
    handled: list[str] = []

    def handler(request: Request) -> dict[str, object]:
        handled.append(request.op)
        if request.op == "status":
            raise RuntimeError("the env went away")
        return {"ok": True, "text": f"did {request.op}"}

    server = ChannelServer(handler)
    yield server, handled  # type: ignore[misc]
    server.close()


def test_the_server_refuses_every_other_request_and_calls_nothing(
    served: tuple[ChannelServer, list[str]],
) -> None:
    server, handled = served
    for data in (b'{"op": "step", "tool": "bash"}\n', b'{"op": "bash"}\n', b"\x00garbage\n",
                 json.dumps({"op": "submit", "x": "y" * 10_000}).encode() + b"\n",
                 b"x" * 100_000):
        reply = _ask(server.socket_path, data)
        assert reply["ok"] is False and reply["error"]
    assert handled == []
    assert _ask(server.socket_path, b'{"op": "help"}\n') == {"ok": True, "text": "did help"}
    assert handled == ["help"]


def test_a_failing_operation_is_an_error_reply_and_the_server_goes_on(
    served: tuple[ChannelServer, list[str]],
) -> None:
    server, _ = served
    failed = _ask(server.socket_path, b'{"op": "status"}\n')
    assert failed["ok"] is False and "the env went away" in str(failed["error"])
    assert _ask(server.socket_path, b'{"op": "score"}')["text"] == "did score"  # no newline


def test_the_socket_is_the_agent_users_alone_and_close_removes_the_folder() -> None:
    server = ChannelServer(lambda request: {"ok": True, "text": ""})
    folder = server.folder
    info = os.stat(server.socket_path)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    if os.geteuid() == 0:
        assert info.st_uid == AGENT_UID
    commands = sorted(path.name for path in (folder / "bin").iterdir())
    assert commands == ["rdbench-help", "rdbench-score", "rdbench-status", "rdbench-submit"]
    assert all(os.access(folder / "bin" / name, os.X_OK) for name in commands)
    server.close()
    server.close()  # idempotent
    assert not folder.exists()


def test_requests_at_once_are_each_answered(served: tuple[ChannelServer, list[str]]) -> None:
    server, _ = served
    replies: list[dict[str, object]] = []
    threads = [threading.Thread(target=lambda: replies.append(
        _ask(server.socket_path, b'{"op": "help"}\n'))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(replies) == 3 and all(reply["ok"] or "busy" in str(reply["error"])
                                     for reply in replies)


# --- in the sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_agents_episode_has_no_channel(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    env = RDEnv(str(copy_toy_task(tmp_path)), sandbox=backend, tools=["bash"])
    try:
        env.reset(seed=0)
        probe = (f"test -e {CHANNEL_DIR} && echo CHANNEL-THERE || echo NO-CHANNEL; "
                 "echo RUN: $(ls -A /run); python3 -c \"import socket; "
                 "s = socket.socket(socket.AF_UNIX); "
                 f"s.connect('{CHANNEL_DIR}/channel.sock')\" 2>&1 | tail -1")
        text, *_ = env.step({"tool": "bash", "input": {"command": probe}})
    finally:
        env.close()
    assert "NO-CHANNEL" in text and "CHANNEL-THERE" not in text
    (listed,) = [line for line in text.splitlines() if line.startswith("RUN:")]
    assert listed.split() == ["RUN:", "lock", "mount"]  # the image's /run, nothing added
    assert "FileNotFoundError" in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_person_scores_sees_status_and_submits_from_the_shell(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    task = copy_toy_task(tmp_path / "tasks")
    out = tmp_path / "runs"
    tmux = Tmux(_rdbench_run(task, out, backend), cwd=tmp_path)
    try:
        screen = tmux.expect(PROMPT, timeout=90)
        assert "rdbench-score" in screen and "rdbench-submit" in screen  # the briefing
        screen = tmux.run("rdbench-help", r"Leaving the shell \(`exit`, Ctrl-D\) submits too\.")
        assert re.search(r"^rdbench-status\s+working time left", screen, re.MULTILINE)
        tmux.type("echo 'print(3)' > answer.py")
        tmux.expect(PROMPT)
        tmux.run("rdbench-score", r"Validation score: 3\.50 \(answer.py printed 3\.00 "
                 r"\(validation split\)\)", timeout=60)
        assert "grading on the validation split..." in tmux.screen()
        # the prompt's deadline moved by the grading's time, written by root
        tmux.run(f"stat -c %U {DEADLINE_FILE}", r"^root")
        tmux.run("rdbench-status", r"  at 0:\d\d:\d\d: Validation score: 3\.50 .*")
        assert "Steps: 1 of 20" in tmux.screen()
        # nothing else is reachable: a raw request for a step or a command is refused
        raw = ("python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
               f"s.connect('{CHANNEL_DIR}/channel.sock'); "
               "s.sendall(b'{\\\"op\\\": \\\"step\\\", \\\"tool\\\": \\\"bash\\\"}\\n'); "
               "print(s.recv(999).decode(), end='')\"")
        tmux.run(raw, r"\{\"ok\": false, \"error\": \"Unknown operation 'step'.*")
        tmux.run("touch /run/rdbench/x 2>&1 | tail -1", r".*Read-only file system")
        # submit asks first
        tmux.type("rdbench-submit")
        tmux.expect(r"for final grading\? \[y/N\] ?$")
        tmux.type("n")
        tmux.expect(rf"Not submitted; go on working\.\n.*{ANY_PROMPT}")
        tmux.type("rdbench-submit")
        tmux.expect(r"for final grading\? \[y/N\] ?$")
        tmux.type("y")
        tmux.expect(r"You submitted \(rdbench-submit\)", timeout=30)
        screen = tmux.expect(r"RUN-EXIT=0", timeout=90)
        assert re.search(r"grading on the hidden test split\.\.\. \d+ s, done", screen)
    finally:
        tmux.kill()
    folder = _only_episode(out)
    result = load_result(folder)
    assert result.outcome == "submitted" and result.raw_score == 3.0
    assert result.steps == 2  # the score and the submit; the refused request is none
    events = read_transcript(folder)
    scores = [event for event in events if event["type"] == "score"]
    assert len(scores) == 1
    assert scores[0]["t"] and scores[0]["normalized_score"] == pytest.approx(0.625)
    assert 0 < scores[0]["working_s"] <= scores[0]["elapsed_working_s"] < 120
    actions = [event.get("tool") for event in events if event["type"] == "action"]
    assert actions == ["score", "submit"]
    closed = [event for event in events if event.get("action") == "terminal_closed"]
    assert closed[0]["details"]["ended"] == "submit"
    assert any(event.get("action") == "channel_submit" for event in events)
    assert not list(Path("/var/tmp").glob(f"rdbench-channel-{os.getpid()}-*"))


def test_people_with_parallel_episodes_are_refused(tmp_path: Path) -> None:
    task = copy_toy_task(tmp_path / "tasks")
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "--task", str(task), "--agent", "human",
                                      "--parallel", "2", "--runs", "2", "--sandbox", "docker",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "--parallel 2 with --agent human" in said and "--parallel 1" in said
    assert not out.exists()  # nothing ran


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_score_is_refused_when_it_would_take_the_last_step(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _ready(backend, request)
    task = copy_toy_task(tmp_path / "tasks")
    out = tmp_path / "runs"
    tmux = Tmux(_rdbench_run(task, out, backend, "--max-steps", "1"), cwd=tmp_path)
    try:
        tmux.expect(PROMPT, timeout=90)
        tmux.type("echo 'print(2)' > answer.py")
        tmux.expect(PROMPT)
        tmux.run("rdbench-score 2>&1; echo CODE=$?", r"CODE=1")
        screen = " ".join(tmux.screen().split())
        assert "rdbench-score: No steps left for a score: this episode has 1 steps" in screen
        tmux.type("exit")
        tmux.expect(r"RUN-EXIT=0", timeout=90)
    finally:
        tmux.kill()
    result = load_result(_only_episode(out))
    assert result.outcome == "submitted" and result.raw_score == 2.0 and result.steps == 1
    types = [event["type"] for event in read_transcript(_only_episode(out))]
    assert "score" not in types and types.count("grade") == 1


def test_the_grading_ticker_counts_seconds_on_a_terminal_and_ends_its_line() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as out:
        ticker = GradingTicker(tick_s=0.05)
        ticker.start(out)
        time.sleep(0.3)
        ticker.stop()
        ticker.stop()  # once
    shown = ""
    while select.select([master], [], [], 1.0)[0] and not shown.endswith("\n"):
        shown += os.read(master, 65536).decode()
    os.close(master)
    assert shown.count(f"\r{TEXT} 0 s") >= 3
    assert shown.endswith(f"\r{TEXT} 0 s, done\r\n")  # the terminal's newline


def test_the_grading_ticker_writes_nothing_but_to_a_terminal() -> None:
    out = io.StringIO()
    ticker = GradingTicker(tick_s=0.01)
    ticker.start(out)
    time.sleep(0.05)
    ticker.stop()
    assert out.getvalue() == ""
