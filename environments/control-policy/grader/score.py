"""Grade a control-policy workspace: the mean return of its policy on hidden Acrobot seeds.

Runs as root in the grading sandbox, beside policy_server.py, seeds.py and rdbench_grading.py:

    python score.py --split validation|test --workspace /home/agent

The environment (gymnasium's Acrobot-v1) runs here, in the root process; the agent's policy
runs in a separate process as the agent user (policy_server.py, `python -I`, working directory
the workspace) and only ever sees observations and answers with actions, one JSON line each,
under a time limit per action and for the whole evaluation. Every process of the agent user is
killed afterwards. Nothing the agent left in the workspace is read here.

The scale (task.toml [scoring]): this task measures training a policy, so its start anchor is
not the untouched workspace (-102.57 on the test seeds) but the reference's look-ahead with the
known dynamics run on top of the untouched linear policy (-81.13), which needs no training at
all: that shortcut, and anything no better, normalizes to 0. Looking ahead stays allowed (it
cannot be told apart from any other computation in act()); it earns credit only on top of a
better policy. tests/test_task_control_policy.py grades the shortcut and checks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rdbench_grading import AGENT_USER, emit, kill_agent_processes, parse_args, remove_tree, shown
from seeds import episode_seeds

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_ID = "Acrobot-v1"
LOAD_TIMEOUT_S = 60.0  # importing policy.py and its load()
ACTION_TIMEOUT_S = 1.0  # one act() call, as seen from here
TOTAL_TIMEOUT_S = 300.0  # every episode together, loading excluded
MAX_LINE_BYTES = 4096


class PolicyFailed(Exception):
    """The policy crashed, timed out or answered something other than an action."""


class LineReader:
    """Reads newline-terminated lines from a pipe, each within a deadline."""

    def __init__(self, stream: IO[bytes]):
        self.fd = stream.fileno()
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.fd, selectors.EVENT_READ)

    def readline(self, timeout: float, during: str, too_slow: str) -> bytes:
        """The next line; PolicyFailed (saying `too_slow` on a timeout) if none comes in time,
        the stream ends (`during` says when) or the line is huge."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE_BYTES:
                raise PolicyFailed(f"the policy server wrote a line over {MAX_LINE_BYTES} bytes")
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise PolicyFailed(too_slow)
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise PolicyFailed(f"the policy server exited during {during}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def parse_reply(line: bytes) -> Any:
    """A reply line as JSON; PolicyFailed if it is not JSON."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested absurdly deep
        raise PolicyFailed(f"the policy server answered {line[:80]!r}, not JSON") from None


def parse_action(line: bytes) -> int:
    """The action in a reply line; PolicyFailed unless it is {"action": 0, 1 or 2}."""
    reply = parse_reply(line)
    action = reply.get("action") if isinstance(reply, dict) else None
    if isinstance(action, bool) or action not in (0, 1, 2) or not isinstance(action, int):
        raise PolicyFailed(f"act() returned {str(action)[:80]}; it must return 0, 1 or 2")
    return action


def start_server(workspace: str, scratch: str, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start policy_server.py as the agent user, from an agent-readable copy."""
    code_dir = os.path.join(scratch, "code")
    os.mkdir(code_dir, 0o755)
    server = shutil.copy(os.path.join(HERE, "policy_server.py"), code_dir)
    os.chmod(server, 0o644)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    identity: dict[str, Any] = {}
    if os.geteuid() == 0:
        import pwd

        agent = pwd.getpwnam(AGENT_USER)
        identity = {"user": agent.pw_uid, "group": agent.pw_gid, "extra_groups": []}
        env.update(HOME=agent.pw_dir, USER=AGENT_USER)
    else:
        env["HOME"] = os.environ.get("HOME", "/tmp")
    return subprocess.Popen(
        [sys.executable, "-I", server, workspace],
        cwd=workspace,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
        **identity,
    )


def run_episodes(
    proc: subprocess.Popen[bytes], seeds: list[int], details: dict[str, Any]
) -> list[float]:
    """Play one episode per seed with the policy behind `proc`; the returns."""
    reader = LineReader(proc.stdout)  # type: ignore[arg-type]
    started = time.monotonic()
    line = reader.readline(
        LOAD_TIMEOUT_S, "loading", f"loading the policy took longer than {LOAD_TIMEOUT_S:.0f}s"
    )
    if parse_reply(line) != {"ready": True}:
        raise PolicyFailed("the policy server did not say it was ready")
    details["load_s"] = round(time.monotonic() - started, 3)
    env = gym.make(ENV_ID)
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    returns: list[float] = []
    details["returns"] = returns
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        new_episode, total = True, 0.0
        while True:
            request = {"obs": [float(x) for x in observation], "new_episode": new_episode}
            try:
                proc.stdin.write((json.dumps(request) + "\n").encode())  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            except BrokenPipeError:
                raise PolicyFailed("the policy server exited during an episode") from None
            left = deadline - time.monotonic()
            if left < ACTION_TIMEOUT_S:
                timeout, too_slow = max(left, 0.0), f"the episodes took over {TOTAL_TIMEOUT_S:.0f}s"
            else:
                timeout, too_slow = ACTION_TIMEOUT_S, (
                    f"one act() call took longer than {ACTION_TIMEOUT_S:.0f}s"
                )
            action = parse_action(reader.readline(timeout, "an episode", too_slow))
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            new_episode = False
            if terminated or truncated:
                break
        returns.append(total)
    details["episodes_s"] = round(time.monotonic() - started - details["load_s"], 3)
    return returns


def stop(proc: subprocess.Popen[bytes]) -> int:
    """End the server and everything of the agent user; how many processes were left."""
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    return kill_agent_processes()


def tail(file: IO[bytes], chars: int = 800) -> str:
    """The end of what the policy wrote to stderr."""
    file.seek(0)
    return file.read().decode("utf-8", "replace").strip()[-chars:]


def grade(split: str, workspace: str, scratch: str) -> None:
    """Evaluate the workspace's policy on `split`'s seeds and emit the verdict."""
    if not os.path.isfile(os.path.join(workspace, "policy.py")):
        emit(None, valid=False, message="there is no policy.py in the workspace")
    seeds = episode_seeds(split)
    details: dict[str, Any] = {"split": split, "episodes": len(seeds)}
    problem = ""
    with tempfile.TemporaryFile() as stderr:
        proc = start_server(workspace, scratch, stderr)
        try:
            returns = run_episodes(proc, seeds, details)
        except PolicyFailed as error:
            problem = str(error)
        finally:
            details["processes_killed"] = stop(proc)
        if problem:
            output = tail(stderr)
            message = f"{problem}; policy output: {output}" if output else problem
            emit(None, valid=False, message=message, details=details)
    mean = float(np.mean(returns))
    emit(
        mean,
        valid=True,
        message=f"mean return over {len(returns)} {split} episodes of {ENV_ID}: {shown(mean)}",
        details=details,
    )


def main() -> None:
    """Grade the workspace named on the command line."""
    args = parse_args()
    scratch = tempfile.mkdtemp(prefix="control-policy-grade-")
    os.chmod(scratch, 0o711)  # root-owned: the agent may enter it but not list or rename
    try:
        grade(args.split, os.path.abspath(args.workspace), scratch)
    finally:
        remove_tree(scratch)


if __name__ == "__main__":
    main()
