"""Shared fixtures: what a test needs (a Docker engine, the sandbox image) and how it skips.

A test marked `docker` skips with the reason when no engine answers, except under CI=true,
where a missing engine is a failure: CI must prove the Docker tests ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """Skip the test for `reason`, or fail it under CI=true."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests may not skip for a missing engine or tool)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A docker SDK client for a running engine."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # any failure to reach the engine means "no engine"
        missing(f"no Docker engine answers ({error}); start dockerd or run `make test`")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client: object) -> str:
    """The tag of the sandbox image, built if it is missing."""
    from rdbench.image import ensure_image

    return ensure_image(docker_client)


@pytest.fixture(autouse=True)
def _needs(request: pytest.FixtureRequest) -> None:
    """Give every test marked `docker` the engine check, even if it takes no fixture."""
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_client")
