"""Workspaces the host cannot unpack, or would rather not hold, on both backends.

The red-team replays of issue 9, each a real `rdbench run` subprocess whose agent is loaded as
`module:Class`: a venv (absolute symlinks), a FIFO, a hard link, a 1,500-deep tree, two 1 GiB
sparse files and a large random file in one workspace, scored then submitted; and a 1 GiB
random file, past the task's workspace limit. Each run ends with a result.json, its peak
memory stays within 300 MB of a harmless run's, and it leaves nothing on the host.
Below them, the streaming methods of each backend on their own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS, REPO, TOY_TASK

from rdbench.records import EpisodeResult, load_result
from rdbench.sandbox import Sandbox, SandboxConfig, SandboxFileNotFound, make_sandbox
from rdbench.sandbox.base import ArchiveError, ArchiveTooLarge
from rdbench.transcript import read_transcript

MEMORY_HEADROOM = 300 * 1024**2
DEEP = "/".join(["d"] * 1500)
ODD_WORKSPACE = f"""set -e
python3 -m venv myenv
mkfifo pipe
ln answer.py hard-link.py
ln -s /usr/bin/python3 absolute-link
mkdir -p {DEEP}
truncate -s 1G sparse-1
truncate -s 1G sparse-2
head -c 150M /dev/urandom > random.bin
echo made"""
ANSWER = {"tool": "write_file", "input": {"path": "answer.py", "content": "print(3)\n"}}
SCORE = {"tool": "score", "input": {}}


def bash(command: str, timeout: int = 120) -> dict[str, Any]:
    return {"tool": "bash", "input": {"command": command, "timeout": timeout}}


def wanted(request: pytest.FixtureRequest, backend: str) -> None:
    request.getfixturevalue("sandbox_image" if backend == "docker" else "bwrap_rootfs")


def run_episode(
    out: Path, backend: str, actions: list[dict[str, Any]]
) -> tuple[EpisodeResult, Path, int, int]:
    """`rdbench run` of one replay episode as a child process: its result, its episode
    folder, its peak RSS in bytes (ru_maxrss of that child) and its pid."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    command = [
        sys.executable, "-c", "from rdbench.cli import app; app()", "run",
        "--task", str(TOY_TASK), "--agent", "agents_for_tests:Actions",
        "--agent-option", f"actions={json.dumps(actions)}",
        "--sandbox", backend, "--out", str(out),
    ]  # fmt: skip
    with (out.parent / f"{out.name}.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    output = (out.parent / f"{out.name}.log").read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    result = load_result(folder)
    return result, folder, usage.ru_maxrss * 1024, proc.pid


def assert_nothing_left(pid: int, request: pytest.FixtureRequest, backend: str) -> None:
    leftovers = sorted(Path("/var/tmp").glob(f"rdbench-*-{pid}-*"))
    assert not leftovers, leftovers
    assert not list(Path("/tmp").glob("rdbench-grade-*"))
    if backend == "docker":
        client: Any = request.getfixturevalue("docker_client")
        assert not client.containers.list(all=True, sparse=True,
                                          filters={"label": f"rdbench.pid={pid}"})


@pytest.fixture(scope="module")
def harmless_peak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The peak RSS of a harmless run, by backend (measured once, on first use)."""
    return {}


def baseline(backend: str, harmless_peak: dict[str, int], tmp_path: Path,
             request: pytest.FixtureRequest) -> int:  # fmt: skip
    if backend not in harmless_peak:
        result, _, peak, pid = run_episode(tmp_path / "harmless", backend, [ANSWER])
        assert result.normalized_score == 0.5
        assert_nothing_left(pid, request, backend)
        harmless_peak[backend] = peak
    return harmless_peak[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_workspace_of_odd_files_is_scored_and_graded_in_bounded_memory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, harmless_peak: dict[str, int]
) -> None:
    wanted(request, backend)
    idle = baseline(backend, harmless_peak, tmp_path, request)
    result, folder, peak, pid = run_episode(
        tmp_path / "odd", backend, [ANSWER, bash(ODD_WORKSPACE), SCORE]
    )
    observations = [e["text"] for e in read_transcript(folder) if e["type"] == "observation"]
    assert "made" in observations[1], observations[1]
    assert "Validation score: 3.5" in observations[2], observations[2]
    assert result.valid and result.normalized_score == 0.5, result
    assert result.infrastructure_error is None and result.outcome == "submitted"
    with tarfile.open(folder / "workspace.tar.gz", "r|gz") as tar:
        kinds = {info.name: info for info in tar}
    assert kinds["myenv/bin/python3"].issym() and kinds["absolute-link"].issym()
    assert kinds["pipe"].isfifo()
    links = {name: kinds[name].linkname for name in ("answer.py", "hard-link.py")
             if kinds[name].islnk()}  # tar stores whichever it meets second as the link
    assert links in ({"hard-link.py": "answer.py"}, {"answer.py": "hard-link.py"}), links
    assert kinds["sparse-1"].size == 1024**3 and DEEP in kinds
    assert (folder / "workspace.tar.gz").stat().st_size < 200 * 1024**2  # holes not expanded
    print(f"peak RSS {backend}: odd files {peak >> 20} MiB, harmless {idle >> 20} MiB")
    assert peak - idle < MEMORY_HEADROOM, (peak, idle)
    assert_nothing_left(pid, request, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_workspace_past_the_limit_is_told_so_and_graded_invalid(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, harmless_peak: dict[str, int]
) -> None:
    wanted(request, backend)
    idle = baseline(backend, harmless_peak, tmp_path, request)
    result, folder, peak, pid = run_episode(
        tmp_path / "big", backend, [ANSWER, bash("head -c 1G /dev/urandom > big.bin"), SCORE]
    )
    observations = [e["text"] for e in read_transcript(folder) if e["type"] == "observation"]
    assert "too large" in observations[2] and "limit of 500 MB" in observations[2]
    assert result.valid is False and result.normalized_score == 0.0, result
    assert "too large" in result.message and "workspace_mb" in result.message
    assert result.infrastructure_error is None and result.outcome == "submitted"
    assert not (folder / "workspace.tar.gz").exists()
    print(f"peak RSS {backend}: 1 GiB random {peak >> 20} MiB, harmless {idle >> 20} MiB")
    assert peak - idle < MEMORY_HEADROOM, (peak, idle)
    assert_nothing_left(pid, request, backend)


# ---- the streaming methods ------------------------------------------------------------------

CONFIG = SandboxConfig(cpus=1.0, memory_mb=512, pids=128, exec_timeout_s=60,
                       labels={"rdbench.run": "test-transfer"})  # fmt: skip


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Sandbox]]:
    """An agent sandbox and a grading sandbox of one backend."""
    backend = str(request.param)
    wanted(request, backend)
    image = request.getfixturevalue("sandbox_image") if backend == "docker" else None
    agent = make_sandbox(backend, replace(CONFIG, image=image))
    grading = make_sandbox(backend, replace(CONFIG, image=image, grading=True))
    yield agent, grading
    agent.close()
    grading.close()


def test_an_archive_growing_past_its_limit_is_cut_off(
    pair: tuple[Sandbox, Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = pair
    agent.exec(["sh", "-c", "head -c 4M /dev/urandom > noise.bin"]).check()
    with pytest.raises(ArchiveTooLarge, match="of disk"):  # the quick check on used blocks
        agent.export_dir("/home/agent", io.BytesIO(), max_bytes=1024**2)
    # Files can grow between that check and tar: the stream's own limit then holds alone.
    monkeypatch.setattr(sys.modules[type(agent).__module__], "check_usage",
                        lambda *args, **options: None)  # fmt: skip
    dest = io.BytesIO()
    with pytest.raises(ArchiveTooLarge, match=r"archive passed 1\.0 MB"):
        agent.export_dir("/home/agent", dest, max_bytes=1024**2)
    assert 0 < len(dest.getvalue()) <= 1024**2
    assert agent.exec(["true"]).ok  # the sandbox goes on


def test_export_then_import_keeps_the_agents_files_as_they_were(
    pair: tuple[Sandbox, Sandbox], tmp_path: Path
) -> None:
    agent, grading = pair
    agent.exec(["sh", "-c", "echo 1 > a; chmod 000 a; echo 2 > b; mkfifo f; ln -s /etc e; "
                "chmod 755 b"]).check()  # fmt: skip
    archive = tmp_path / "w.tar.gz"
    with archive.open("wb") as file:
        exported = agent.export_dir("/home/agent", file, max_bytes=10 * 1024**2)
    assert exported.size == archive.stat().st_size
    assert "a: Cannot open" in exported.skipped  # the agent made it unreadable: left out
    grading.import_archive(archive, "/home/agent")
    listing = grading.exec(["sh", "-c", "stat -c '%n %U %F %a' b f e; ls /tmp; [ ! -e a ]"])
    assert listing.ok, listing
    assert "b agent regular file 755" in listing.stdout
    assert "f agent fifo" in listing.stdout and "e agent symbolic link" in listing.stdout
    assert ".rdbench-import" not in listing.stdout  # the streamed file is gone


def test_an_archive_tar_refuses_is_an_archive_error(
    pair: tuple[Sandbox, Sandbox], tmp_path: Path
) -> None:
    _, grading = pair
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../tmp/escaped")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ArchiveError, match="could not be unpacked"):
        grading.import_archive(archive, "/home/agent")
    assert not grading.exec(["test", "-e", "/tmp/escaped"]).ok
    with pytest.raises(SandboxFileNotFound):
        grading.export_dir("/home/agent/nope", io.BytesIO())
