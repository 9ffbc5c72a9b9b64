"""Shared fixtures: what a test needs (a Docker engine, the sandbox image, bubblewrap and the
image's exported files, a headless Chromium) and how it skips.

A test marked `docker` (or `bwrap`, or `browser`) skips with the reason when no engine
answers (or bwrap cannot run, or no Chromium is installed), except under CI=true, where that
is a failure: CI must prove those tests ran.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fake_servers import FakeServer, fake_server
from helpers import BACKENDS
from loopback_guard import install as keep_to_loopback

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Tests make folder trees 1,500 deep (what a hostile workspace holds), deeper than Python's
# default recursion limit; pytest removes old tmp_path folders with shutil.rmtree, which
# recurses once per level, so it needs room for them.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))

# Network traffic in tests goes to loopback only (see loopback_guard.py).
keep_to_loopback()


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


@pytest.fixture(scope="session")
def bwrap_available() -> None:
    """Bubblewrap is installed and the bwrap backend can run here (as root)."""
    from rdbench.sandbox.bwrap import bwrap_problem

    problem = bwrap_problem()
    if problem is not None:
        missing(problem)


@pytest.fixture(scope="session")
def bwrap_rootfs(bwrap_available: None) -> str:
    """The exported filesystem of the sandbox image (exported from Docker if not cached)."""
    from rdbench.image import image_tag
    from rdbench.sandbox import SandboxUnavailable
    from rdbench.sandbox.rootfs import METADATA, ensure_rootfs, rootfs_dir

    if not (rootfs_dir() / METADATA).is_file():
        from rdbench.image import ensure_image
        from rdbench.sandbox.docker import connect

        try:
            client = connect()
        except SandboxUnavailable as error:
            missing(f"no exported sandbox image for bwrap and no Docker engine: {error}")
        ensure_image(client)
        return str(ensure_rootfs(image_tag(), client=client))
    return str(ensure_rootfs())


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[str, str]:
    """The paths of Chromium and its chromedriver (Debian: chromium, chromium-driver)."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing("no Chromium or chromedriver on PATH; install Debian's chromium and "
                "chromium-driver (as root: apt-get install chromium chromium-driver), or run "
                "`make test`")
    assert browser is not None and driver is not None
    return browser, driver


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each sandbox backend in turn (for docker, with the sandbox image built)."""
    if request.param == "docker":
        request.getfixturevalue("sandbox_image")
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Undo the CLI's logging setup after each test (CliRunner closes the stream it logged
    to, and its level filter would hide the events other tests capture), back to the
    library's own: quiet unless the program configures `logging`."""
    yield
    structlog.reset_defaults()
    from rdbench.logs import use_standard_logging

    use_standard_logging()  # what importing rdbench sets up: quiet unless `logging` is set


@pytest.fixture(autouse=True)
def _needs(request: pytest.FixtureRequest) -> None:
    """Give every test marked `docker` (`bwrap`, `browser`) the engine (bwrap, browser)
    check, even if it takes no fixture."""
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_client")
    if request.node.get_closest_marker("bwrap"):
        request.getfixturevalue("bwrap_rootfs")
    if request.node.get_closest_marker("browser"):
        request.getfixturevalue("browser_binaries")


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


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Two busy loops (the machine's two cores under load) for as long as the test runs."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for loop in loops:
        loop.kill()
        loop.wait()


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c() -> None:
    """Every test starts with Python's own SIGINT handler. Tests send Ctrl-C to this process
    and to the processes it starts, which inherit an ignored SIGINT; one test's (or one
    library's) leftover handler must not make another test's Ctrl-C vanish."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A fake model API on loopback (fake_servers.py), with the environment the claude and
    openai agents read set for it: a test Anthropic key, and no OpenAI key or base URL."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with fake_server() as fake:
        yield fake
