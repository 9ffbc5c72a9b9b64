"""The Docker backend: isolation, limits, timeouts, output caps, files, labels, cleanup.

Every network check stays on loopback: the container must have no interface but `lo`, a
server on the host's loopback must be unreachable from inside, and name resolution must fail.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rdbench.sandbox import SandboxConfig, SandboxFileNotFound
from rdbench.sandbox.docker import DockerSandbox, remove_leftovers

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sandbox(docker_client: Any, sandbox_image: str) -> Iterator[DockerSandbox]:
    config = SandboxConfig(
        cpus=1.0, memory_mb=512, pids=128, exec_timeout_s=30, output_limit=64_000,
        image=sandbox_image, labels={"rdbench.run": "test-sandbox"},
    )
    box = DockerSandbox(config, client=docker_client)
    yield box
    box.close()


def test_commands_run_as_unprivileged_agent(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(["id", "-un"])
    assert result.ok and result.stdout.strip() == "agent"
    assert sandbox.exec(["pwd"]).stdout.strip() == "/home/agent"


def test_agent_cannot_become_root_or_write_system_files(sandbox: DockerSandbox) -> None:
    assert not sandbox.exec(["sh", "-c", "echo x > /etc/passwd"]).ok
    assert not sandbox.exec(["python3", "-c", "import os; os.setuid(0)"]).ok


def test_container_limits_and_hardening(sandbox: DockerSandbox) -> None:
    attrs = sandbox.container.attrs["HostConfig"]
    assert attrs["NetworkMode"] == "none"
    assert attrs["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in attrs["SecurityOpt"]
    assert attrs["Memory"] == 512 * 1024 * 1024
    assert attrs["NanoCpus"] == 1_000_000_000
    assert attrs["PidsLimit"] == 128
    assert attrs["Init"] is True
    status = sandbox.exec(["cat", "/proc/self/status"]).stdout
    cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff"))
    assert cap_eff.split()[1] == "0000000000000000"


def test_labels_name_the_run(sandbox: DockerSandbox) -> None:
    labels = sandbox.container.labels
    assert labels["rdbench"] == "1"
    assert labels["rdbench.run"] == "test-sandbox"


def test_only_loopback_interface(sandbox: DockerSandbox) -> None:
    code = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"
    assert sandbox.exec(["python3", "-c", code]).stdout.strip() == "['lo']"


@pytest.fixture
def host_server() -> Iterator[tuple[int, list[Any]]]:
    """A TCP server on the host's loopback that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[Any] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_server_on_host_loopback_cannot_be_reached_from_inside(
    sandbox: DockerSandbox, host_server: tuple[int, list[Any]]
) -> None:
    port, accepted = host_server
    probe = socket.create_connection(("127.0.0.1", port), timeout=2)  # the server works
    probe.close()
    code = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    print('connected')\n"
        "except OSError as e:\n    print('refused', type(e).__name__)\n"
    )
    result = sandbox.exec(["python3", "-c", code])
    assert result.stdout.startswith("refused"), result
    assert len(accepted) == 1  # only the host's own probe


def test_name_resolution_fails(sandbox: DockerSandbox) -> None:
    code = (
        "import socket\n"
        "try:\n    socket.getaddrinfo('rdbench-test.invalid', 80)\n    print('resolved')\n"
        "except socket.gaierror:\n    print('failed')\n"
    )
    assert sandbox.exec(["python3", "-c", code], timeout=20).stdout.strip() == "failed"


def test_timed_out_command_is_killed_inside_container(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(
        ["sh", "-c", "sleep 301 & setsid sleep 302 & sleep 303; echo never"], timeout=1.5
    )
    assert result.timed_out
    assert "never" not in result.stdout
    processes = sandbox.exec(["ps", "-eo", "args"]).stdout
    assert "sleep 30" not in processes, processes


def test_output_is_capped_and_flagged(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"])
    assert result.truncated
    assert len(result.stdout) == 64_000
    assert result.returncode == 0


def test_stdin_cwd_env_and_exit_code(sandbox: DockerSandbox) -> None:
    result = sandbox.exec(["sh", "-c", 'cat; echo "$FOO"; pwd; exit 3'],
                          input=b"hello\n", cwd="/tmp", env={"FOO": "bar"})
    assert result.stdout == "hello\nbar\n/tmp\n"
    assert result.returncode == 3


def test_root_user_on_request(sandbox: DockerSandbox) -> None:
    assert sandbox.exec(["id", "-u"], user="root").stdout.strip() == "0"


def test_file_round_trip_binary(sandbox: DockerSandbox) -> None:
    data = bytes(range(256)) * 100
    sandbox.write_file("nested/dir/blob.bin", data)
    assert sandbox.read_file("/home/agent/nested/dir/blob.bin") == data
    owner = sandbox.exec(["stat", "-c", "%U", "/home/agent/nested/dir/blob.bin"]).stdout
    assert owner.strip() == "agent"
    assert sandbox.exec(["sh", "-c", "echo more >> nested/dir/blob.bin"]).ok


def test_missing_file_is_a_typed_error(sandbox: DockerSandbox) -> None:
    with pytest.raises(SandboxFileNotFound):
        sandbox.read_file("/home/agent/does-not-exist.txt")


def test_close_is_idempotent_and_removes_container(
    docker_client: Any, sandbox_image: str
) -> None:
    box = DockerSandbox(SandboxConfig(image=sandbox_image), client=docker_client)
    container_id = box.id
    box.close()
    box.close()
    assert not docker_client.containers.list(all=True, filters={"id": container_id})


def test_gc_removes_containers_whose_runner_is_gone(
    docker_client: Any, sandbox_image: str
) -> None:
    dead_pid = "999999999"
    leftover = docker_client.containers.run(
        sandbox_image, ["sleep", "infinity"], detach=True,
        labels={"rdbench": "1", "rdbench.pid": dead_pid, "rdbench.run": "crashed"},
    )
    try:
        removed = remove_leftovers()
        assert leftover.short_id in removed
        assert not docker_client.containers.list(all=True, filters={"id": leftover.id})
    finally:
        with contextlib.suppress(Exception):
            leftover.remove(force=True)
