"""The shipped conformance suite (`rdbench.sandbox.conformance`, `rdbench sandbox check`) run
against docker and bwrap, one test per behaviour; and a deliberately weak third-party backend,
installed through the `rdbench.sandboxes` entry point, failing exactly what it lacks.

Every network check stays on loopback: the sandbox must have no interface but `lo`, a server
on the host's loopback must be unreachable from inside, and name resolution is tried only
where no query can leave the machine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BACKENDS, REPO
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.sandbox import SANDBOXES, SandboxConfig, SandboxUnavailable
from rdbench.sandbox.conformance import (
    CheckResult,
    CheckSpec,
    check_names,
    check_specs,
    run_checks,
)
from rdbench.sandbox.conformance.checks import CHECKS

WEAK_BACKEND = REPO / "tests" / "fixtures" / "weak-backend"
_RESULTS: dict[str, dict[str, CheckResult] | SandboxUnavailable] = {}


def results_for(backend: str, request: pytest.FixtureRequest) -> dict[str, CheckResult]:
    """Every check's result for `backend`, run once per test session (a backend that cannot
    start a sandbox fails every test with why, without trying again)."""
    if backend not in _RESULTS:
        image = request.getfixturevalue("sandbox_image") if backend == "docker" else None
        try:
            _RESULTS[backend] = {r.name: r for r in run_checks(backend, image=image)}
        except SandboxUnavailable as error:
            _RESULTS[backend] = error
    results = _RESULTS[backend]
    if isinstance(results, SandboxUnavailable):
        raise results
    return results


@pytest.mark.parametrize("name", check_names())
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_shows_the_behaviour(
    backend: str, name: str, request: pytest.FixtureRequest
) -> None:
    result = results_for(backend, request)[name]
    assert result.passed, f"{backend} fails {name}: {result.detail}"


def test_every_check_names_its_behaviour_and_themes_select_checks() -> None:
    specs = check_specs()
    assert len(specs) == len({spec.name for spec in specs}) >= 35
    assert all(spec.behaviour.endswith((".", ")")) for spec in specs)
    themes = [spec.name.split(".")[0] for spec in specs]
    assert list(dict.fromkeys(themes)) == [
        "identity", "commands", "files", "limits", "isolation", "lifetime"
    ]  # fmt: skip
    assert [spec.name for spec in check_specs(["lifetime"])] == [
        "lifetime.close_is_idempotent", "lifetime.nothing_started_inside_outlives_close",
        "lifetime.leaving_a_with_block_closes_the_sandbox",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"Unknown conformance check\(s\) no-such-check"):
        check_specs(["no-such-check"])


def test_a_check_that_crashes_fails_with_its_error_and_every_sandbox_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(WEAK_BACKEND))
    from weak_rdbench_backend import WeakBackend, WeakSandbox

    started: list[WeakSandbox] = []

    def weak(config: SandboxConfig, **options: object) -> WeakSandbox:
        started.append(WeakBackend().start(config))
        return started[-1]

    def crashes(ctx: object) -> None:
        raise KeyError("boom")

    monkeypatch.setitem(SANDBOXES, "weak-here", weak)
    monkeypatch.setitem(CHECKS, "lifetime.crashes", CheckSpec("lifetime.crashes", "-", crashes))
    results = run_checks("weak-here", only=["lifetime.crashes", "files.a_binary_file_round_trips"])
    assert results == [
        CheckResult("files.a_binary_file_round_trips", True),
        CheckResult("lifetime.crashes", False, "KeyError: 'boom'"),
    ]
    assert started and not any(box.root.exists() for box in started)


@pytest.mark.docker
def test_cli_prints_a_line_per_behaviour_and_exits_0_when_all_hold(sandbox_image: str) -> None:
    result = CliRunner().invoke(
        app, ["sandbox", "check", "docker", "--image", sandbox_image, "--only", "lifetime"]
    )
    assert result.exit_code == 0, result.output
    assert "pass  lifetime.close_is_idempotent: close() ends a sandbox" in result.output
    assert "docker: 3 of 3 behaviours hold" in result.output


def test_cli_refuses_an_unknown_backend_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["sandbox", "check", "no-such-backend"])
    assert result.exit_code == 1
    assert "Cannot check backend 'no-such-backend'" in result.output
    assert "docker" in result.output and "bwrap" in result.output


# ---- a weak third-party backend ------------------------------------------------------------


def _host_interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())


def _host_name_servers() -> bool:
    path = Path("/etc/resolv.conf")
    return path.exists() and any(
        line.split()[:1] == ["nameserver"] for line in path.read_text().splitlines()
    )


def _host_shm_is_dockers() -> bool:
    stat = os.statvfs("/dev/shm")
    return stat.f_blocks * stat.f_frsize == 64 * 2**20 and os.path.ismount("/dev/mqueue")


def weak_backend_lacks() -> dict[str, str]:
    """What the weak backend (the host itself, in a temporary folder) lacks: the checks that
    must fail, each with why."""
    lacks = {
        "identity.commands_run_as_the_agent_in_its_home": "no agent user, no /home/agent",
        "identity.root_may_run_code_as_the_agent_in_a_grading_sandbox": "no agent user",
        "commands.the_image_python_and_packages_are_there": "no image",
        "files.written_files_belong_to_the_agent_and_commands_see_them": "no agent user",
        "limits.a_timed_out_command_is_killed_with_everything_it_started": "kills sh alone",
        "limits.a_memory_hog_is_killed_and_said_to_be_out_of_memory": "no memory limit",
        "limits.output_is_capped_and_flagged": "no output cap",
        "limits.huge_output_is_drained_without_holding_it_in_memory": "no output cap",
        "limits.files_may_not_grow_past_the_size_limit": "no file size limit",
        "limits.a_fork_bomb_is_contained": "no pids limit",
        "limits.writing_past_the_disk_limit_says_the_disk_is_full": "no disk limit",
        "isolation.a_server_on_the_host_loopback_is_unreachable": "the host's network",
        "isolation.the_agent_has_no_capabilities": "the host's capabilities",
        "isolation.the_agent_cannot_make_namespaces_mount_use_keyrings_or_set_sysctls":
            "the host's kernel, unfiltered",
        "isolation.root_in_a_grading_sandbox_cannot_either": "the host's kernel, unfiltered",
        "isolation.the_agent_cannot_read_grader_files": "no user switch",
        "isolation.host_files_are_out_of_reach": "the host's files",
        "isolation.nobody_writes_the_system_not_even_root_in_a_grading_sandbox":
            "the host's writable system",
        "lifetime.nothing_started_inside_outlives_close": "host processes outlive it",
        "lifetime.leaving_a_with_block_closes_the_sandbox": "host processes outlive it",
    }  # fmt: skip
    if _host_interfaces() != ["lo"]:
        lacks["isolation.only_the_loopback_interface"] = "the host's interfaces"
        lacks["isolation.names_do_not_resolve"] = "the host's interfaces (not tried)"
    if _host_name_servers():
        lacks["isolation.resolv_conf_names_no_name_server_of_the_host"] = "the host's"
    if not _host_shm_is_dockers():
        lacks["isolation.dev_shm_holds_64_mb_and_dev_mqueue_is_there"] = "the host's /dev/shm"
    if os.geteuid() == 0:  # commands run as whoever runs the check
        lacks["identity.the_agent_cannot_become_root"] = "the agent is root"
        lacks["identity.root_cannot_switch_users_in_an_agent_sandbox"] = "root may"
        lacks["isolation.the_agent_cannot_write_system_files"] = "the agent is root"
    return lacks


def test_a_weak_third_party_backend_fails_exactly_what_it_lacks() -> None:
    """`weak` is installed the way a third party's package is (a dist-info with an
    `rdbench.sandboxes` entry point on the path) and checked through the CLI."""
    env = {**os.environ, "PYTHONPATH": str(WEAK_BACKEND)}
    command = [str(Path(sys.executable).parent / "rdbench"), "sandbox", "check", "weak"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = re.findall(r"^(pass|FAIL)  (\S+): ", done.stdout, flags=re.MULTILINE)
    assert [name for _, name in lines] == check_names()  # one line per behaviour, in order
    failed = {name for verdict, name in lines if verdict == "FAIL"}
    assert failed == set(weak_backend_lacks()), done.stdout
    # each failure says why, in its own words
    assert re.search(r"FAIL  limits.output_is_capped_and_flagged: .*\n +5 MB of output came "
                     r"back whole", done.stdout)  # fmt: skip
    assert re.search(r"the sandbox connected to the host's 127\.0\.0\.1:\d+", done.stdout)
    passes = len(check_names()) - len(failed)
    assert f"weak: {passes} of {len(check_names())} behaviours hold" in done.stdout
