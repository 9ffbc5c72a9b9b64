"""An agent that misbehaves, driven through the env on every backend: each case is an episode.

The sandbox must contain it (fork bomb, memory hog, disk filler, runaway output), keep it
from the network, the host's files and the grader's, and leave nothing behind. Network checks
stay on loopback: no interface but `lo` inside, a server on the host's loopback unreachable,
name resolution failing; nothing is ever sent to any other address.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK

from rdbench.env import RDEnv
from rdbench.task import load_task


@pytest.fixture
def env(backend: str) -> Iterator[RDEnv]:
    environment = RDEnv(load_task(TOY_TASK), sandbox=backend, budget={"steps": 100})
    environment.reset()
    yield environment
    environment.close()


def bash(env: RDEnv, command: str, timeout: float | None = None) -> str:
    tool_input: dict[str, Any] = {"command": command}
    if timeout is not None:
        tool_input["timeout"] = timeout
    observation, _, terminated, truncated, _ = env.step({"tool": "bash", "input": tool_input})
    assert not (terminated or truncated)
    return observation


def host_is_responsive() -> bool:
    start = time.perf_counter()
    subprocess.run(["true"], check=True)
    return time.perf_counter() - start < 2.0


def test_fork_bomb_is_contained_and_episode_goes_on(env: RDEnv, busy_cores: None) -> None:
    """Even with both cores busy, the bomb is killed and the very next command runs."""
    observation = bash(env, "bomb() { bomb | bomb & }; bomb", timeout=8)
    assert "timed out" in observation or "exit code" in observation
    assert host_is_responsive()
    assert "alive" in bash(env, "echo alive", timeout=30)


def test_memory_hog_is_killed_and_told_it_ran_out_of_memory(env: RDEnv) -> None:
    # the toy task allows 512 MB; this touches 1.5 GB
    hog = "python3 -c \"b = bytearray(1536 * 1024 * 1024); print('survived', len(b))\""
    observation = bash(env, hog, timeout=60)
    assert "survived" not in observation
    assert "out of memory" in observation.lower()
    assert "alive" in bash(env, "echo alive")


def test_only_loopback_inside(env: RDEnv) -> None:
    code = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
    assert "['lo']" in bash(env, f'python3 -c "{code}"')


def test_host_loopback_service_is_unreachable(
    env: RDEnv, host_server: tuple[int, list[Any]]
) -> None:
    port, accepted = host_server
    socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the server works
    observation = bash(env, f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected", timeout=20)
    assert "connected" not in observation
    assert len(accepted) == 1


def test_name_resolution_fails(env: RDEnv) -> None:
    code = (
        "import socket\n"
        "try:\n    socket.getaddrinfo('rdbench-test.invalid', 80); print('resolved')\n"
        "except socket.gaierror:\n    print('no-dns')\n"
    )
    observation, *_ = env.step({"tool": "python", "input": {"code": code, "timeout": 30}})
    assert "no-dns" in observation


def test_host_files_and_grader_files_are_absent(env: RDEnv, tmp_path: Path) -> None:
    secret = tmp_path / f"host-secret-{uuid.uuid4().hex}"
    secret.write_text("host only")
    assert "No such file" in bash(env, f"cat {secret}")
    listing = bash(env, "ls -A /grader; find / -xdev -name score.py 2>/dev/null | head -3")
    assert "score.py" not in listing
    assert "print(5)" not in bash(env, "grep -rs 'print(5)' /home /tmp /opt 2>/dev/null | head")


def test_writing_outside_workspace_is_refused(env: RDEnv) -> None:
    for target in ("/usr/rdbench-x", "/etc/passwd", "/opt/rdbench-venv/x"):
        observation = bash(env, f"echo x >> {target} && echo WROTE")
        assert "WROTE" not in observation
    assert "ok" in bash(env, "echo x > mine.txt && echo ok")


def test_filling_the_disk_is_stopped_with_a_clear_observation(env: RDEnv) -> None:
    observation = bash(env, "head -c 8G /dev/zero > big.bin; echo rc=$?; ls -la big.bin",
                       timeout=120)
    assert "rc=0" not in observation
    assert "file size limit exceeded" in observation.lower() or "no space" in observation.lower()
    bash(env, "rm -f big.bin")


def test_runaway_output_is_capped(env: RDEnv) -> None:
    observation = bash(env, "yes rdbench", timeout=5)
    assert "truncated" in observation
    assert len(observation) <= env.max_observation_chars


def test_background_process_does_not_survive_submit(env: RDEnv) -> None:
    bash(env, "nohup sleep 1000 >/dev/null 2>&1 & setsid sleep 1001 & echo started")
    _, _, terminated, _, info = env.step({"tool": "submit"})
    assert terminated and info["raw_score"] == 1.0
    leftovers = subprocess.run(["pgrep", "-f", "sleep 100[01]"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""


@pytest.mark.parametrize(
    "action",
    [
        {"tool": "read_file", "input": {"path": "answer\u0000.py"}},
        {"tool": "bash", "input": {"command": "echo a\u0000b"}},
        {"tool": "write_file", "input": {"path": "x\u0000y", "content": "z"}},
        {"tool": "edit_file", "input": {"path": "\u0000", "old_string": "a", "new_string": "b"}},
    ],
    ids=["read_file", "bash", "write_file", "edit_file"],
)
def test_a_nul_byte_in_an_action_is_an_error_observation(env: RDEnv, action: Any) -> None:
    observation, _, terminated, truncated, info = env.step(action)
    assert observation.startswith("Error:") and "NUL" in observation
    assert not (terminated or truncated) and "error" in info
    assert "alive" in bash(env, "echo alive")


# What the agent's code sees while it is graded: 10 when it can see the grader's command line
# but no word of its split, 11 when it can see the split, 0 when it sees no grader at all.
SPLIT_SNOOPER = """
import glob
lines = []
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        lines.append(open(path, "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
grader = [line for line in lines if "score.py" in line]
split_seen = any(word in line for line in grader for word in ("validation", "--split"))
print(0 if not grader else 11 if split_seen else 10)
"""


def test_the_grader_s_split_cannot_be_seen_by_the_agent_s_code(
    backend: str, tmp_path: Path
) -> None:
    from rdbench.grading import default_factory, grade_workspace

    (tmp_path / "answer.py").write_text(SPLIT_SNOOPER)
    grade = grade_workspace(load_task(TOY_TASK), tmp_path, split="validation",
                            factory=default_factory(backend))  # fmt: skip
    assert grade.raw_score == 10.5  # the grader saw "validation" (+0.5); the agent's code not
