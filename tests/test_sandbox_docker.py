"""The Docker backend beyond the protocol (see test_sandbox_conformance.py): the container's
limits and hardening, its labels, its removal, and the cleanup of leftovers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from rdbench.sandbox import SandboxConfig
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
