"""The sandbox image: its tag follows its inputs, apt's mirror is found, and the built image
holds what tasks need (Python 3.11 with the task libraries, the `agent` user, a root-only
/grader)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rdbench import image
from rdbench.image import (
    ImageBuildError,
    apt_mirror,
    build_context,
    dockerfile_default_base,
    ensure_image,
    image_inputs_hash,
    image_tag,
)
from rdbench.sandbox.base import AGENT_UID

DOCKERFILE = (
    b"ARG BASE_IMAGE=python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}\nLABEL rdbench.image=1\n"
)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A Dockerfile and an image/ folder of our own, so the tests never touch the repo's."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_bytes(DOCKERFILE)
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    (image_dir / "requirements.txt").write_text("numpy==2.0.0\n")
    return dockerfile, image_dir


# ---- the tag ---------------------------------------------------------------------------------


def test_hash_is_stable_for_the_same_inputs(inputs: tuple[Path, Path]) -> None:
    dockerfile, image_dir = inputs
    first = image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir)
    again = image_inputs_hash("some/base:1", dockerfile=DOCKERFILE, image_dir=image_dir)
    assert first == again
    assert re.fullmatch(r"[0-9a-f]{12}", first)


def test_hash_changes_when_the_dockerfile_changes(inputs: tuple[Path, Path]) -> None:
    dockerfile, image_dir = inputs
    before = image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir)
    dockerfile.write_bytes(DOCKERFILE + b"RUN true\n")
    assert image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir) != before


def test_hash_changes_when_the_requirements_change(inputs: tuple[Path, Path]) -> None:
    dockerfile, image_dir = inputs
    before = image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir)
    (image_dir / "requirements.txt").write_text("numpy==2.0.1\n")
    assert image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir) != before


def test_hash_changes_with_the_base_image(inputs: tuple[Path, Path]) -> None:
    dockerfile, image_dir = inputs
    one = image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir)
    two = image_inputs_hash("some/base:2", dockerfile=dockerfile, image_dir=image_dir)
    assert one != two


def test_hash_ignores_a_wheelhouse_in_the_image_folder(inputs: tuple[Path, Path]) -> None:
    dockerfile, image_dir = inputs
    before = image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir)
    (image_dir / "wheelhouse").mkdir()
    (image_dir / "wheelhouse" / "numpy-2.0.0-cp311-cp311-any.whl").write_bytes(b"wheel")
    assert image_inputs_hash("some/base:1", dockerfile=dockerfile, image_dir=image_dir) == before


def test_image_tag_is_the_sandbox_repository_and_the_hash() -> None:
    tag = image_tag("some/base:1")
    assert tag == f"rdbench-sandbox:{image_inputs_hash('some/base:1')}"


def test_auto_base_without_debootstrap_is_the_dockerfiles_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(image.shutil, "which", lambda name: None)
    assert image.resolve_base("auto") == dockerfile_default_base()
    assert image.resolve_base("my/base:3.11") == "my/base:3.11"


def test_dockerfile_default_base_reads_the_arg_line() -> None:
    assert dockerfile_default_base(DOCKERFILE) == "python:3.11-slim-bookworm"
    with pytest.raises(ImageBuildError, match="ARG BASE_IMAGE"):
        dockerfile_default_base(b"FROM scratch\n")


def test_shipped_dockerfile_defaults_to_python_311_slim() -> None:
    assert dockerfile_default_base() == "python:3.11-slim-bookworm"


def test_build_context_holds_dockerfile_image_folder_and_wheels(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    dockerfile, image_dir = inputs
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"wheel")
    (wheels / ".complete").write_text("")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    build_context(ctx, wheelhouse=wheels, dockerfile=dockerfile, image_dir=image_dir)
    files = sorted(p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file())
    assert files == [
        "Dockerfile",
        "image/requirements.txt",
        "image/wheelhouse/numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    ]


# ---- apt's mirror ----------------------------------------------------------------------------


def test_apt_mirror_reads_a_one_line_sources_list(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# the security suite comes first and must be skipped\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ "
        "bookworm main contrib  # trailing comment\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
    )
    found = apt_mirror(sources_list=sources, sources_dir=tmp_path / "none")
    assert found == "http://mirror.example/debian"


def test_apt_mirror_reads_a_deb822_sources_file(tmp_path: Path) -> None:
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    (sources_dir / "other.sources.disabled").write_text(
        "Types: deb\nURIs: http://wrong.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (sources_dir / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "Enabled: no\n"
        "URIs: http://disabled.example/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "\n"
        "Types: deb deb-src\n"
        "# a snapshot we do not use: http://snapshot.example/archive\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    found = apt_mirror(sources_list=tmp_path / "missing.list", sources_dir=sources_dir)
    assert found == "http://mirror.example/debian"


def test_apt_mirror_without_a_bookworm_source_says_how_to_fix_it(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text("deb http://security.example/debian-security bookworm-security main\n")
    with pytest.raises(ImageBuildError, match=r"No apt source serves Debian 'bookworm'.*--base"):
        apt_mirror(sources_list=sources, sources_dir=tmp_path / "none")


# ---- the built image -------------------------------------------------------------------------


def _run(client: Any, tag: str, command: list[str], user: str = "agent") -> str:
    output: bytes = client.containers.run(
        tag, command, user=user, remove=True, network_disabled=True, stderr=True
    )
    return output.decode()


@pytest.mark.docker
def test_image_runs_python_311_with_task_libraries_as_agent(
    docker_client: Any, sandbox_image: str
) -> None:
    code = "import numpy, sklearn, pandas, sys, os; print(sys.version); print(os.getuid())"
    lines = _run(docker_client, sandbox_image, ["python3", "-c", code]).splitlines()
    assert lines[0].startswith("3.11")
    assert lines[1] == str(AGENT_UID)


@pytest.mark.docker
def test_agent_user_has_its_home_and_bash(docker_client: Any, sandbox_image: str) -> None:
    out = _run(docker_client, sandbox_image, ["sh", "-c", "id -u; id -g; pwd; getent passwd agent"])
    uid, gid, cwd, passwd = out.splitlines()
    assert (uid, gid, cwd) == (str(AGENT_UID), str(AGENT_UID), "/home/agent")
    assert passwd.endswith(":/home/agent:/bin/bash")


@pytest.mark.docker
def test_grader_dir_is_root_only(docker_client: Any, sandbox_image: str) -> None:
    out = _run(docker_client, sandbox_image, ["stat", "-c", "%a %U %G", "/grader"], user="root")
    assert out.strip() == "700 root root"
    check = "ls /grader 2>/dev/null && echo readable || echo denied"
    assert _run(docker_client, sandbox_image, ["sh", "-c", check]).strip() == "denied"


@pytest.mark.docker
def test_image_has_the_process_and_archive_tools(docker_client: Any, sandbox_image: str) -> None:
    script = "for tool in bash tar ps pkill sleep; do command -v $tool || echo missing-$tool; done"
    out = _run(docker_client, sandbox_image, ["sh", "-c", script])
    assert "missing" not in out
    assert len(out.split()) == 5


@pytest.mark.docker
def test_image_is_labelled(docker_client: Any, sandbox_image: str) -> None:
    labels = docker_client.images.get(sandbox_image).labels
    assert labels.get("rdbench.image") == "1"


@pytest.mark.docker
def test_second_ensure_image_does_not_build(
    docker_client: Any, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_build(*args: object, **kwargs: object) -> str:
        raise AssertionError("ensure_image rebuilt an image that already exists")

    monkeypatch.setattr(image, "_build", no_build)
    monkeypatch.setattr(image, "bootstrap_base_image", no_build)
    monkeypatch.setattr(image, "_wheelhouse", no_build)
    before = docker_client.images.get(sandbox_image).id
    assert ensure_image(docker_client) == sandbox_image
    assert docker_client.images.get(sandbox_image).id == before


class _FailingBuildAPI:
    """The low-level API of an engine whose build stops with an error."""

    def build(self, **kwargs: object) -> list[dict[str, str]]:
        return [
            {"stream": "Step 1/2 : FROM nowhere/base\n"},
            {"error": "pull access denied for nowhere/base"},
        ]


class _FailingBuildClient:
    api = _FailingBuildAPI()


def test_failed_build_raises_an_error_that_names_the_image_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=r"docker build of t:1 on nowhere/base failed") as e:
        image._build(_FailingBuildClient(), tmp_path, tag="t:1", base="nowhere/base")
    assert "pull access denied" in str(e.value)
    assert "--base IMAGE" in str(e.value)
