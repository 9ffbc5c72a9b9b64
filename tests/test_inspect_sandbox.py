"""rdbench's sandboxes inside Inspect: Inspect's own portable conformance checks
(inspect_ai.util._sandbox.self_check, every `test_*` in it) run against the rdbench-docker and
rdbench-bwrap sandbox environments, as that module's docstring describes (a function-scoped
`sandbox_env` fixture, layered over one sandbox per backend, marking the checks that cannot pass
by design); Inspect finds both environments through its entry point; and a real Inspect eval
runs in one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from inspect_ai.util._sandbox import self_check
from inspect_ai.util._sandbox.self_check import *  # noqa: F403  (Inspect's checks, collected here)

from rdbench.integrations.inspect.sandbox import (
    RdbenchSandboxConfig,
    RdbenchSandboxEnvironment,
    load_config,
)
from rdbench.sandbox import SandboxUnavailable

pytestmark = pytest.mark.anyio

ENVIRONMENTS = [
    pytest.param("rdbench-docker", marks=pytest.mark.docker),
    pytest.param("rdbench-bwrap", marks=pytest.mark.bwrap),
]
# Small limits: the checks need little (their largest file and input are 50 MiB).
CONFIG = RdbenchSandboxConfig(cpus=1, memory_mb=1024, disk_mb=768, exec_timeout_s=120)
# The checks an rdbench sandbox fails by design, with the reason.
BY_DESIGN = {
    "test_exec_as_user": (
        "rdbench sandboxes have two users, 'agent' (the default) and 'root', and root has no "
        "capabilities and read-only system folders: it cannot add a third user, and exec as "
        "one raises SandboxUserUnsupportedError"
    ),
}
CHECKS = sorted(name for name in dir(self_check) if name.startswith("test_"))


@pytest.fixture
def anyio_backend() -> str:
    """Inspect runs on asyncio."""
    return "asyncio"


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def rdbench_env(request: pytest.FixtureRequest) -> Iterator[RdbenchSandboxEnvironment]:
    """One sandbox of each rdbench environment for the module's checks, started and removed
    through Inspect's lifecycle hooks (sample_init, sample_cleanup)."""
    from inspect_ai.util._sandbox.registry import registry_find_sandboxenv

    if request.param == "rdbench-docker":
        request.getfixturevalue("sandbox_image")
    else:
        request.getfixturevalue("bwrap_rootfs")
    environment_type = registry_find_sandboxenv(request.param)
    environments = anyio.run(partial(environment_type.sample_init, "self-check", CONFIG, {}))
    environment = environments["default"]
    assert isinstance(environment, RdbenchSandboxEnvironment)
    yield environment
    anyio.run(partial(environment_type.sample_cleanup, "self-check", CONFIG, environments, False))


@pytest.fixture
def sandbox_env(
    request: pytest.FixtureRequest, rdbench_env: RdbenchSandboxEnvironment
) -> RdbenchSandboxEnvironment:
    """The environment Inspect's checks take, with the checks that cannot pass by design
    marked as strict xfails (their reason stated)."""
    reason = BY_DESIGN.get(request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    return rdbench_env


async def test_files_are_read_with_the_agents_permissions(
    rdbench_env: RdbenchSandboxEnvironment,
) -> None:
    """read_file reads as the agent user, never with the host's privilege: a root-only file,
    directly or through a symlink the agent made, is a PermissionError naming the file."""
    made = await rdbench_env.exec(
        ["sh", "-c", "mkdir -p /tmp/root-only && echo secret > /tmp/root-only-file && "
         "chmod 600 /tmp/root-only-file"], user="root")  # fmt: skip
    assert made.success, made.stderr
    await rdbench_env.exec(["ln", "-sf", "/tmp/root-only-file", "link-to-root-only"])
    try:
        for name in ("/tmp/root-only-file", "link-to-root-only"):
            with pytest.raises(PermissionError, match=name):
                await rdbench_env.read_file(name)
        with pytest.raises(PermissionError, match="root-only-file"):
            await rdbench_env.write_file("/tmp/root-only-file", "overwritten")
        assert (await rdbench_env.exec(["cat", "/tmp/root-only-file"], user="root")).stdout \
            == "secret\n"
    finally:
        await rdbench_env.exec(["rm", "-rf", "/tmp/root-only", "/tmp/root-only-file"], user="root")
        await rdbench_env.exec(["rm", "-f", "link-to-root-only"])


async def test_users_root_and_the_agent(rdbench_env: RdbenchSandboxEnvironment) -> None:
    """The default user is the agent (also by its uid); "root" and uid "0" are root; a user
    the sandbox does not have is SandboxUserUnsupportedError."""
    from inspect_ai.util import SandboxUserUnsupportedError

    assert (await rdbench_env.exec(["whoami"])).stdout == "agent\n"
    for agent in ("agent", "61000"):
        assert (await rdbench_env.exec(["whoami"], user=agent)).stdout == "agent\n"
    for root in ("root", "0"):
        assert (await rdbench_env.exec(["id", "-u"], user=root)).stdout == "0\n"
    with pytest.raises(SandboxUserUnsupportedError, match="'agent'"):
        await rdbench_env.exec(["whoami"], user="nobody")


async def test_output_over_inspects_limit_raises(rdbench_env: RdbenchSandboxEnvironment) -> None:
    """Output past Inspect's exec output limit raises OutputLimitExceededError holding the
    start of the output; output within it is returned whole."""
    from inspect_ai.util import OutputLimitExceededError
    from inspect_ai.util._sandbox.limits import override_max_exec_output_size

    with override_max_exec_output_size(1024):
        within = await rdbench_env.exec(["sh", "-c", "head -c 1024 /dev/zero | tr '\\0' a"])
        assert within.stdout == "a" * 1024
        with pytest.raises(OutputLimitExceededError) as raised:
            await rdbench_env.exec(["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' b"])
    assert raised.value.truncated_output == "b" * 1024


async def test_connection(rdbench_env: RdbenchSandboxEnvironment) -> None:
    """A Docker sandbox tells how to open a shell in its container as the agent; a bwrap one
    has no handle to join and says so."""
    if rdbench_env.backend == "docker":
        connection = await rdbench_env.connection()
        sandbox_id = str(rdbench_env.sandbox.id)
        assert connection.container == sandbox_id
        assert connection.command.startswith("docker exec -it --user agent")
        assert connection.command.split()[-2] == sandbox_id
    else:
        with pytest.raises(NotImplementedError, match="rdbench-bwrap"):
            await rdbench_env.connection()


def test_every_check_is_pulled_in() -> None:
    """Every check of Inspect's suite is collected here (44 in inspect-ai 0.3.285), and each
    exception names a check that exists."""
    assert len(CHECKS) >= 44
    assert set(BY_DESIGN) <= set(CHECKS)
    assert all(callable(globals().get(name)) for name in CHECKS)


def test_inspect_finds_both_environments_through_its_entry_point(tmp_path: Path) -> None:
    """A fresh Python that has not imported rdbench finds rdbench-docker and rdbench-bwrap by
    name in Inspect's registry (Inspect loads rdbench's `inspect_ai` entry point itself)."""
    script = textwrap.dedent("""
        import sys
        from inspect_ai.util._sandbox.registry import registry_find_sandboxenv
        assert "rdbench" not in sys.modules, "imported before the lookup"
        for name in ("rdbench-docker", "rdbench-bwrap"):
            found = registry_find_sandboxenv(name)
            print(name, found.__module__, found.__name__)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "rdbench-docker rdbench.integrations.inspect.sandbox RdbenchDockerSandbox",
        "rdbench-bwrap rdbench.integrations.inspect.sandbox RdbenchBwrapSandbox",
    ]


def test_import_rdbench_does_not_import_inspect() -> None:
    """Inspect is an extra: `import rdbench` (and its sandbox package) never loads it."""
    script = "import sys, rdbench, rdbench.sandbox; print('inspect_ai' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_config_from_a_file_and_its_errors(tmp_path: Path) -> None:
    """A task's sandbox config may be a TOML or JSON file of RdbenchSandboxConfig's fields; a
    wrong field or a missing file is refused saying what was wrong."""
    toml = tmp_path / "sandbox.toml"
    toml.write_text("memory_mb = 512\ncpus = 0.5\n")
    assert load_config(str(toml)) == RdbenchSandboxConfig(memory_mb=512, cpus=0.5)
    json_file = tmp_path / "sandbox.json"
    json_file.write_text('{"disk_mb": 256}')
    assert load_config(str(json_file)).disk_mb == 256
    assert load_config(None) == RdbenchSandboxConfig()
    (tmp_path / "bad.toml").write_text("memory = 512\n")
    with pytest.raises(ValueError, match="memory"):
        load_config(str(tmp_path / "bad.toml"))
    with pytest.raises(ValueError, match="not a file"):
        load_config(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
# Inspect's own call into tenacity, not ours
@pytest.mark.filterwarnings("ignore:The 'initial' parameter is deprecated:DeprecationWarning")
def test_an_inspect_eval_runs_in_an_rdbench_sandbox(
    environment: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An Inspect task that says `sandbox=<name>` runs its sample in an rdbench sandbox (as
    the agent, in its home) through Inspect's own eval loop, offline with the mock model:
    Inspect's injected tools work there (exec_remote, the text editor), its scorer reads what
    the solver wrote, and the sandbox is removed after the eval."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import Score, Target, scorer
    from inspect_ai.solver import Generate, TaskState, solver
    from inspect_ai.tool import text_editor
    from inspect_ai.util import sandbox

    request.getfixturevalue("sandbox_image" if "docker" in environment else "bwrap_rootfs")
    seen: dict[str, Any] = {}

    @solver
    def in_sandbox():  # type: ignore[no-untyped-def]
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            who = await sandbox().exec(["sh", "-c", "whoami; pwd"])
            await sandbox().write_file("answer.txt", who.stdout.split()[0])
            seen["output"] = who.stdout
            # Inspect's injected tools server: exec_remote and the text editor tool
            remote = await sandbox().exec_remote(["sh", "-c", "echo $((6 * 7))"], stream=False)
            seen["remote"] = remote.stdout
            editor = text_editor()
            await editor(command="create", path="/home/agent/notes.txt", file_text="hello\n")
            seen["notes"] = await sandbox().exec(["cat", "notes.txt"])
            seen["sandbox"] = sandbox().as_type(RdbenchSandboxEnvironment).sandbox
            return state

        return solve

    @scorer(metrics=[])
    def answer_is_agent():  # type: ignore[no-untyped-def]
        async def score(state: TaskState, target: Target) -> Score:
            answer = await sandbox().read_file("answer.txt")
            return Score(value=1.0 if answer == target.text else 0.0, answer=answer)

        return score

    task = Task(dataset=[Sample(input="who?", target="agent")], solver=in_sandbox(),
                scorer=answer_is_agent(), sandbox=(environment, None))  # fmt: skip
    [log] = eval(task, model="mockllm/model", log_dir=str(tmp_path), display="none")
    assert log.status == "success", log.error
    assert log.samples is not None
    [sample] = log.samples
    assert sample.scores is not None
    assert next(iter(sample.scores.values())).value == 1.0
    assert seen["output"].split() == ["agent", "/home/agent"]
    assert seen["remote"] == "42\n"
    assert seen["notes"].stdout == "hello\n"
    with pytest.raises(SandboxUnavailable):  # closed by sample_cleanup
        seen["sandbox"].exec(["true"])
