"""Choosing a backend: `auto` takes the first usable registered backend by priority (docker
where an engine answers, else bwrap); a backend that cannot run here fails at once, saying how
to make it run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import TOY_TASK
from structlog.testing import capture_logs

from rdbench.env import RDEnv
from rdbench.sandbox import (
    SandboxConfig,
    SandboxUnavailable,
    available_backends,
    backend_problem,
    make_sandbox,
)
from rdbench.sandbox import select as select_module
from rdbench.sandbox.bwrap import BwrapBackend
from rdbench.sandbox.docker import DockerBackend
from rdbench.task import load_task


class Fake:
    """Stands in for a backend class: records that it was made."""

    def __init__(self, name: str):
        self.backend = name

    def __call__(self, config: SandboxConfig, **options: Any) -> Fake:
        return self

    def put_dir(self, local_dir: str, path: str, **options: Any) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Fake]:
    made = {"docker": Fake("docker"), "bwrap": Fake("bwrap")}
    for backend in (DockerBackend, BwrapBackend):
        fake = made[backend.name]
        monkeypatch.setattr(backend, "start", lambda self, config, fake=fake, **o: fake(config))
    monkeypatch.setattr(BwrapBackend, "problem", lambda self: None)
    monkeypatch.setattr(select_module, "_last_pick", None)
    return made


def no_engine() -> Any:
    raise SandboxUnavailable("No Docker engine answered (test). Start one (dockerd)")


def test_auto_picks_docker_when_an_engine_answers(
    fakes: dict[str, Fake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DockerBackend, "problem", lambda self: None)
    with capture_logs() as logs:
        box = make_sandbox("auto", SandboxConfig())
    assert box is fakes["docker"]
    assert {"event": "sandbox.auto", "picked": "docker", "log_level": "info"} in logs


def test_auto_falls_back_to_bwrap_without_an_engine(
    fakes: dict[str, Fake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rdbench.sandbox.docker.connect", no_engine)
    with capture_logs() as logs:
        box = make_sandbox("auto", SandboxConfig())
    assert box is fakes["bwrap"]
    assert [entry["picked"] for entry in logs if entry["event"] == "sandbox.auto"] == ["bwrap"]


def test_env_records_the_backend_auto_picked(
    fakes: dict[str, Fake], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rdbench.sandbox.docker.connect", no_engine)
    env = RDEnv(load_task(TOY_TASK))  # sandbox="auto" is the default
    try:
        env.reset()
        assert env.sandbox_name == "auto" and env.sandbox_used == "bwrap"
    finally:
        env.close()


def test_docker_unavailable_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rdbench.sandbox.docker.docker.from_env", no_engine)
    with pytest.raises(SandboxUnavailable, match="dockerd"):
        make_sandbox("docker", SandboxConfig())
    assert "dockerd" in (backend_problem("docker") or "")


def test_bwrap_without_rootfs_or_engine_says_how_to_make_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("rdbench.sandbox.docker.connect", no_engine)
    monkeypatch.setattr("rdbench.sandbox.bwrap.bwrap_problem", lambda: None)
    assert "rdbench image build" in (backend_problem("bwrap") or "")
    assert available_backends() == []
    assert "No sandbox backend works here" in (backend_problem("auto") or "")


def test_available_backends_are_those_without_a_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "image.json").write_text("{}")  # an exported root filesystem
    monkeypatch.setattr("rdbench.sandbox.docker.connect", no_engine)
    monkeypatch.setattr("rdbench.sandbox.bwrap.bwrap_problem", lambda: None)
    monkeypatch.setattr("rdbench.sandbox.bwrap.rootfs_dir", lambda: tmp_path)
    assert available_backends() == ["bwrap"]


def test_unknown_backend_is_named() -> None:
    assert "known: auto, docker, bwrap" in (backend_problem("podman") or "")
    with pytest.raises(SandboxUnavailable, match="auto"):
        make_sandbox("podman", SandboxConfig())
