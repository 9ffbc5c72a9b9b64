"""An agent that misbehaves, driven through the env on every backend: each case is an episode.

What the sandbox alone must do (contain a fork bomb, keep the agent from the network, the
host's files and the system) is checked by the shipped conformance suite
(rdbench.sandbox.conformance, run for every backend by test_sandbox_conformance.py). Here is
what the env adds: the agent is told, in its observation, what stopped it (memory, disk,
output), the episode goes on, the grader's files never enter the agent's sandbox, nothing
outlives a submit, and the grader's command line gives nothing away.
"""

from __future__ import annotations

import subprocess
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


def test_memory_hog_is_killed_and_told_it_ran_out_of_memory(env: RDEnv) -> None:
    # the toy task allows 512 MB; this touches 1.5 GB
    hog = "python3 -c \"b = bytearray(1536 * 1024 * 1024); print('survived', len(b))\""
    observation = bash(env, hog, timeout=60)
    assert "survived" not in observation
    assert "out of memory" in observation.lower()
    assert "alive" in bash(env, "echo alive")


def test_the_grader_s_files_are_absent_from_the_agent_s_sandbox(env: RDEnv) -> None:
    listing = bash(env, "ls -A /grader; find / -xdev -name score.py 2>/dev/null | head -3")
    assert "score.py" not in listing
    assert "print(5)" not in bash(env, "grep -rs 'print(5)' /home /tmp /opt 2>/dev/null | head")


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
