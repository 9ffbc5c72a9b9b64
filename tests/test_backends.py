"""Sandbox backends as plug-ins: found through the `rdbench.sandboxes` entry points (the
built-ins too), imported only when used, preferred by priority by `auto`, looped over by `rdbench
gc` and `rdbench image build`; and the Sandbox protocol's members on the real backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.sandbox import (
    ENTRY_POINT_GROUP,
    SandboxBackend,
    SandboxConfig,
    SandboxFileNotFound,
    SandboxOutputLimit,
    SandboxUnavailable,
    backend_names,
    get_backend,
    make_sandbox,
    usable_backends,
)
from rdbench.sandbox import backend as backend_module
from rdbench.sandbox import select as select_module
from rdbench.sandbox.bwrap import BwrapBackend
from rdbench.sandbox.docker import DockerBackend

# A third party's backend, as a package of its own would ship it. Its sandboxes run commands
# as host processes: no walls at all (a plug-in is free to be weak; the conformance suite says
# what it lacks), but a real backend: its commands run and their output comes back.
PLUGIN = '''
import subprocess, uuid

class LocalSandbox:
    """Runs each command as a host process."""

    backend = "localdemo"

    def __init__(self, config, options):
        self.config, self.options, self.closed = config, options, False
        self.id = uuid.uuid4().hex[:8]

    def exec(self, cmd, *, input=None, cwd=None, env=None, user=None, timeout=None):
        from rdbench.sandbox import ExecResult
        done = subprocess.run(cmd, input=input, cwd=cwd, capture_output=True, timeout=timeout)
        return ExecResult(done.returncode, done.stdout.decode(), done.stderr.decode())

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class LocalBackend:
    """A third party's backend."""

    name = "localdemo"
    priority = 5  # preferred over docker and bwrap while usable
    problem_text = None

    def __init__(self):
        self.prepared, self.cleaned = [], []

    def problem(self):
        return self.problem_text

    def prepare(self, image):
        self.prepared.append(image)
        return f"localdemo: ready for {image}"

    def remove_leftovers(self, everything):
        self.cleaned.append(everything)
        return ["old1", "old2"]

    def start(self, config, **options):
        return LocalSandbox(config, options)


class HalfBackend:
    """A backend that forgot most of the contract (and declares no priority)."""

    name = "half"

    def start(self, config, **options):
        return LocalSandbox(config, options)
'''


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points_txt: str) -> None:
    """A distribution declaring `entry_points_txt`, with the plug-in module, on sys.path; the
    registry forgets the backends it loaded (restored after the test)."""
    (tmp_path / "rdbench_sandbox_demo.py").write_text(PLUGIN)
    info = tmp_path / "rdbench_sandbox_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rdbench-sandbox-demo\n"
                                   "Version: 0.1\n")  # fmt: skip
    (info / "entry_points.txt").write_text(entry_points_txt)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rdbench_sandbox_demo", raising=False)
    monkeypatch.setattr(backend_module, "_loaded", {})
    monkeypatch.setattr(select_module, "_last_pick", None)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The third-party backend `localdemo`, installed through the entry point."""
    install(tmp_path, monkeypatch,
            "[rdbench.sandboxes]\nlocaldemo = rdbench_sandbox_demo:LocalBackend\n")  # fmt: skip
    yield get_backend("localdemo")


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# ---- the registry ---------------------------------------------------------------------------


def test_the_built_ins_are_registered_through_entry_points() -> None:
    declared = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["docker"] == "rdbench.sandbox.docker:DockerBackend"
    assert declared["bwrap"] == "rdbench.sandbox.bwrap:BwrapBackend"
    assert backend_names()[:2] == ["docker", "bwrap"]  # by priority: 10, then 20
    docker, bwrap = get_backend("docker"), get_backend("bwrap")
    assert isinstance(docker, DockerBackend) and isinstance(bwrap, BwrapBackend)
    assert isinstance(docker, SandboxBackend) and isinstance(bwrap, SandboxBackend)
    assert (docker.name, docker.priority, bwrap.name, bwrap.priority) == ("docker", 10, "bwrap", 20)


def test_naming_a_backend_imports_only_its_entry_point() -> None:
    imported = python(
        "import sys, rdbench, rdbench.sandbox\n"
        "from rdbench.identity import resolve_backend\n"
        "from rdbench.sandbox import get_backend\n"
        "before = 'docker' in sys.modules\n"
        "assert resolve_backend('bwrap') == 'bwrap' and get_backend('bwrap').name == 'bwrap'\n"
        "print(before, 'docker' in sys.modules, 'rdbench.sandbox.docker' in sys.modules)"
    )
    assert imported == "False False False"
    assert python("import sys; from rdbench.sandbox import get_backend; get_backend('docker');"
                  " print('docker' in sys.modules)") == "True"  # fmt: skip


def test_import_rdbench_imports_no_docker_sdk_by_importtime() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import rdbench"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    assert "rdbench.sandbox" in imported  # the report is read right: the package was imported
    assert not [name for name in imported if name == "docker" or name.startswith("docker.")]


def test_a_third_party_backend_is_found_and_started_by_name(plugin: Any) -> None:
    assert type(plugin).__module__ == "rdbench_sandbox_demo"
    assert "localdemo" in backend_names()
    config = SandboxConfig(cpus=1.0, labels={"rdbench.run": "test-backends"})
    with make_sandbox("localdemo", config, flavour="x") as sandbox:
        assert sandbox.backend == "localdemo"
        assert sandbox.config is config and sandbox.options == {"flavour": "x"}
        assert sandbox.exec(["echo", "from the plug-in"]).stdout == "from the plug-in\n"
    assert sandbox.closed  # the context manager closed it


def test_auto_prefers_the_usable_backend_with_the_lowest_priority(
    plugin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert backend_names()[0] == "localdemo"  # priority 5, before docker's 10
    with make_sandbox("auto", SandboxConfig()) as sandbox:
        assert sandbox.backend == "localdemo"
    assert usable_backends()[0] == "localdemo"

    monkeypatch.setattr(plugin, "priority", 50)  # now after docker (10) and bwrap (20)
    monkeypatch.setattr(DockerBackend, "problem", lambda self: "no engine (test)")
    monkeypatch.setattr(BwrapBackend, "problem", lambda self: "no bubblewrap (test)")
    assert backend_names() == ["docker", "bwrap", "localdemo"]
    assert get_backend("auto") is plugin  # the others cannot run

    monkeypatch.delattr(plugin, "priority")
    monkeypatch.delattr(type(plugin), "priority")  # declares none: DEFAULT_PRIORITY (100)
    assert backend_names() == ["docker", "bwrap", "localdemo"]


def test_auto_skips_an_unusable_backend_and_says_why_when_none_can_run(
    plugin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugin, "problem_text", "the demo cluster is down (test)")
    monkeypatch.setattr(DockerBackend, "problem", lambda self: None)
    assert get_backend("auto").name == "docker"  # localdemo has priority 5 but cannot run
    assert "localdemo" not in usable_backends()

    monkeypatch.setattr(DockerBackend, "problem", lambda self: "no engine (test)")
    monkeypatch.setattr(BwrapBackend, "problem", lambda self: "no bubblewrap (test)")
    with pytest.raises(SandboxUnavailable) as raised:
        make_sandbox("auto", SandboxConfig())
    assert str(raised.value) == (
        "No sandbox backend works here. localdemo: the demo cluster is down (test); "
        "docker: no engine (test); bwrap: no bubblewrap (test)"
    )


def test_an_unknown_backend_names_the_known_ones(plugin: Any) -> None:
    with pytest.raises(SandboxUnavailable, match=r"'podman'; known: auto, localdemo, docker, "
                       r"bwrap\. .*rdbench\.sandboxes"):  # fmt: skip
        make_sandbox("podman", SandboxConfig())
    done = CliRunner().invoke(app, ["run", "--task", "tabular-credit", "--agent", "null",
                                    "--sandbox", "podman"])  # fmt: skip
    assert done.exit_code == 1
    assert "'podman' is not a sandbox backend; use one of: auto, localdemo, docker, bwrap" in (
        " ".join(done.output.split()))


def test_a_broken_or_incomplete_plugin_is_named_and_hides_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, "[rdbench.sandboxes]\n"
            "gone = rdbench_no_such_module:Backend\n"
            "half = rdbench_sandbox_demo:HalfBackend\n")  # fmt: skip
    with pytest.raises(SandboxUnavailable, match=r"'gone' \(rdbench_no_such_module:Backend.*"
                       "cannot be loaded"):  # fmt: skip
        get_backend("gone")
    with pytest.raises(SandboxUnavailable, match=r"'half'.* lacks problem, prepare, "
                       r"remove_leftovers: a backend must"):  # fmt: skip
        get_backend("half")
    names = backend_names()
    assert names[:2] == ["docker", "bwrap"] and set(names) == {"docker", "bwrap", "gone", "half"}


# ---- gc and image build loop over the backends ----------------------------------------------


def test_gc_asks_every_backend_to_remove_its_leftovers(
    plugin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, bool]] = []

    def docker_gone(self: Any, everything: bool) -> list[str]:
        asked.append(("docker", everything))
        raise SandboxUnavailable("No Docker engine answered (test)")

    def bwrap_removes(self: Any, everything: bool) -> list[str]:
        asked.append(("bwrap", everything))
        return ["123-abc"]

    # the built-ins are stood in for: a real gc here would touch other runs' leftovers
    monkeypatch.setattr(DockerBackend, "remove_leftovers", docker_gone)
    monkeypatch.setattr(BwrapBackend, "remove_leftovers", bwrap_removes)
    monkeypatch.setattr("rdbench.sandbox.hostdirs.remove_dead", lambda everything: [])
    done = CliRunner().invoke(app, ["gc"])
    assert done.exit_code == 0, done.output
    assert plugin.cleaned == [False]
    assert asked == [("docker", False), ("bwrap", False)]
    assert done.output.splitlines() == [
        "localdemo: removed 2 sandbox(es) old1 old2",
        "docker: skipped (No Docker engine answered (test))",
        "bwrap: removed 1 sandbox(es) 123-abc",
        "removed 0 other host folder(s)",
    ]


@pytest.mark.docker
@pytest.mark.bwrap
def test_image_build_prepares_every_backend(plugin: Any, sandbox_image: str,
                                            bwrap_rootfs: str) -> None:  # fmt: skip
    done = CliRunner().invoke(app, ["image", "build"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == f"sandbox image: {sandbox_image}"
    assert f"localdemo: ready for {sandbox_image}" in lines
    assert f"bwrap root filesystem: {Path(bwrap_rootfs)}" in lines
    assert plugin.prepared == [sandbox_image]


# ---- the Sandbox protocol on the real backends ----------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_real_sandbox_has_every_protocol_member(
    backend: str, request: pytest.FixtureRequest
) -> None:
    config = SandboxConfig(cpus=1.0, memory_mb=512, pids=128, exec_timeout_s=30,
                           labels={"rdbench.run": "test-backends"})  # fmt: skip
    if backend == "docker":
        config = replace(config, image=request.getfixturevalue("sandbox_image"))
    else:
        request.getfixturevalue("bwrap_rootfs")
    with make_sandbox(backend, config) as sandbox:
        assert sandbox.backend == backend
        assert sandbox.id and isinstance(sandbox.id, str)
        sandbox.write_file("/tmp/mine.txt", "0123456789")
        sandbox.write_file("/tmp/roots.txt", "secret", user="root")
        owners = sandbox.exec(["stat", "-c", "%U", "/tmp/mine.txt", "/tmp/roots.txt"])
        assert owners.stdout.split() == ["agent", "root"]
        assert sandbox.read_file("/tmp/mine.txt") == b"0123456789"
        assert sandbox.read_file("/tmp/mine.txt", max_bytes=10) == b"0123456789"
        with pytest.raises(SandboxOutputLimit):
            sandbox.read_file("/tmp/mine.txt", max_bytes=9)
        with pytest.raises(SandboxFileNotFound):
            sandbox.read_file("/tmp/none.txt")
        assert sandbox.exec(["true"]).ok
    with pytest.raises(SandboxUnavailable):  # closed on leaving the with block
        sandbox.exec(["true"])
