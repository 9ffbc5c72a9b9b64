"""rdbench used as a library: quiet (nothing on stdout, logs through `logging`), cheap to
import (no Docker SDK), and a good Gymnasium citizen (vector envs with shared memory)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK, copy_toy_task

from rdbench.env import RDEnv
from rdbench.task import load_task

NON_ASCII = "Scores 1\u20135 \u2013 d\u00e9j\u00e0 vu \u2713"  # an en dash among them


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_rdbench_loads_no_docker_sdk() -> None:
    done = python("import sys, rdbench; print(sorted(m for m in sys.modules "
                  "if m == 'docker' or m.startswith('docker.')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_backend_module_is_imported_when_the_backend_is_used() -> None:
    done = python("import sys; from rdbench.sandbox import backend_factory; "
                  "backend_factory('docker'); print('docker' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_make_reset_step_close_print_nothing_on_stdout(backend: str) -> None:
    code = f"""
import gymnasium, rdbench
env = gymnasium.make("rdbench/tabular-credit-v0", sandbox={backend!r})
observation, info = env.reset(seed=0)
observation, reward, terminated, truncated, info = env.step(
    {{"tool": "bash", "input": {{"command": "echo hi >&2"}}}})
assert "hi" in observation, observation
env.close()
"""
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_library_logs_go_to_the_logging_module_when_configured(backend: str) -> None:
    code = f"""
import logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
from rdbench.env import RDEnv
from rdbench.task import load_task
env = RDEnv(load_task({str(TOY_TASK)!r}), sandbox={backend!r})
env.reset()
env.close()
"""
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "INFO:rdbench.sandbox." in done.stderr and "sandbox.start" in done.stderr


@pytest.fixture
def en_dash_task(tmp_path: Path) -> Path:
    """The toy task with an en dash (and other non-ASCII) in its instructions."""
    task = copy_toy_task(tmp_path)
    instructions = task / "instructions.md"
    instructions.write_text(instructions.read_text() + f"\n{NON_ASCII}\n")
    return task


def test_async_vector_env_with_shared_memory_resets_steps_and_closes(
    backend: str, en_dash_task: Path
) -> None:
    from gymnasium.vector import AsyncVectorEnv

    from rdbench.sandbox.process import launch

    launch(["true"]).wait()  # launcher threads run here before the workers are forked
    launch(["true"], confined=True).wait()
    task = load_task(en_dash_task)
    envs = AsyncVectorEnv([lambda: RDEnv(task, sandbox=backend)] * 2)  # shared_memory on
    try:
        observations, _ = envs.reset(seed=0)
        assert all(NON_ASCII in text for text in observations), observations
        action = {"tool": "bash", "input": {"command": "printf 'caf\\u00e9 \\u2013 ok'"}}
        observations, _, terminated, truncated, _ = envs.step((action, action))
        assert len(observations) == 2
        assert all(text.endswith("caf\u00e9 \u2013 ok") for text in observations), observations
        assert not any(terminated) and not any(truncated)
    finally:
        envs.close()


@pytest.fixture
def env(backend: str) -> Iterator[RDEnv]:
    environment = RDEnv(load_task(TOY_TASK), sandbox=backend)
    environment.reset()
    yield environment
    environment.close()


@pytest.mark.parametrize("action", [
    {"tool": "read_file", "input": {"path": "answer\u0000.py"}},
    {"tool": "write_file", "input": {"path": "a\u0000b", "content": "x"}},
    {"tool": "bash", "input": {"command": "echo \u0000"}},
    "not json at all",
    {"tool": "bash"},
])
def test_a_bad_action_or_failing_tool_is_an_observation_never_an_exception(
    env: RDEnv, action: Any
) -> None:
    observation, _, terminated, truncated, _ = env.step(action)
    assert observation.startswith("Error") or "exit code: 1" in observation, observation
    assert not (terminated or truncated)
    observation, *_ = env.step({"tool": "bash", "input": {"command": "echo still here"}})
    assert "still here" in observation
