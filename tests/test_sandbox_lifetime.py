"""A sandbox's footprint on the host, on both backends: its disk is size-limited (a full one
is reported), a SIGKILLed runner's sandboxes are removed by its reaper within seconds (no gc),
and gc removes what dead processes left, however deep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS, TOY_TASK

from rdbench.sandbox import SandboxConfig, hostdirs, make_sandbox
from rdbench.sandbox.disk import SandboxDisk

MB = 1024 * 1024
DEEP = 1500
DEEP_TREE = f"for i in $(seq {DEEP}); do mkdir d && cd d || exit 1; done; echo deep"


def _config(backend: str, request: pytest.FixtureRequest, **changes: Any) -> SandboxConfig:
    image = request.getfixturevalue("sandbox_image") if backend == "docker" else None
    if backend == "bwrap":
        request.getfixturevalue("bwrap_rootfs")
    return SandboxConfig(cpus=1.0, memory_mb=256, pids=64, exec_timeout_s=60, image=image,
                         **changes)  # fmt: skip


def _eventually(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---- the disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_writing_past_the_disk_limit_says_the_disk_is_full(
    backend: str, request: pytest.FixtureRequest
) -> None:
    box: Any = make_sandbox(backend, _config(backend, request, disk_mb=64))
    try:
        before = os.statvfs(hostdirs.STATE_DIR)
        fill = "for f in a b c; do dd if=/dev/zero of=$HOME/$f bs=1M count=100 || exit 1; done"
        result = box.exec(["sh", "-c", fill])
        after = os.statvfs(hostdirs.STATE_DIR)
        assert result.returncode != 0
        assert "No space left on device" in result.stderr
        assert "[rdbench: the sandbox's disk is full (limit 64 MB)]" in result.stderr
        assert box.disk.image.stat().st_blocks * 512 <= 64 * MB  # the host pays for no more
        fell = (before.f_bavail - after.f_bavail) * before.f_frsize
        assert fell <= 64 * MB + 16 * MB, fell  # (+ what other work on this host wrote)
        assert box.exec(["sh", "-c", "head -c 4M /dev/zero > /tmp/more"]).returncode != 0
        assert box.exec(["rm", "-f", "/home/agent/a", "/home/agent/b"]).ok
        room = box.exec(["sh", "-c", "head -c 4M /dev/zero > /tmp/more && echo ok"])
        assert room.stdout == "ok\n" and "disk is full" not in room.stderr
    finally:
        box.close()
    assert not box.disk.folder.exists() and not box.disk.image.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_disk_is_writable(backend: str, request: pytest.FixtureRequest) -> None:
    box: Any = make_sandbox(backend, _config(backend, request, disk_mb=64))
    try:
        script = "for d in /home/agent /tmp /var/tmp /; do df -P $d | tail -1 | cut -d' ' -f1; done"
        devices = box.exec(["sh", "-c", script], user="root").stdout.split()
        assert len(set(devices[:3])) == 1 and devices[3] != devices[0]
        assert box.exec(["touch", "/opt/x"], user="root").returncode != 0
    finally:
        box.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_removes_a_deep_tree_at_once(backend: str, request: pytest.FixtureRequest) -> None:
    box: Any = make_sandbox(backend, _config(backend, request, disk_mb=64))
    assert box.exec(["sh", "-c", DEEP_TREE]).stdout == "deep\n"
    started = time.monotonic()
    box.close()
    assert time.monotonic() - started < 5
    assert not box.disk.folder.exists() and not box.disk.image.exists()
    assert not hostdirs.mounts_under(box.disk.folder)


# ---- gc -------------------------------------------------------------------------------------


def test_gc_removes_a_dead_process_deep_folders_and_disks(tmp_path: Path) -> None:
    dead = 999_999_999  # above any pid_max: never a live process
    plain = tmp_path / f"rdbench-grade-{dead}-0123456789"
    plain.mkdir()
    subprocess.run(["sh", "-c", f"cd {plain} && {DEEP_TREE}"], check=True, capture_output=True)
    disk = SandboxDisk(tmp_path / f"rdbench-bwrap-{dead}-abcdef0123", 32)
    disk.make_folders()
    subprocess.run(["sh", "-c", f"cd {disk.folder}/home && {DEEP_TREE}"], check=True,
                   capture_output=True)  # fmt: skip
    live = tmp_path / f"rdbench-docker-{os.getpid()}-livelive00"
    live.mkdir()
    other = tmp_path / "rdbench-notes"
    other.mkdir()

    removed = hostdirs.remove_dead(state_dir=tmp_path)

    assert sorted(removed) == sorted([plain.name, disk.folder.name, disk.image.name])
    assert not plain.exists() and not disk.folder.exists() and not disk.image.exists()
    assert not hostdirs.mounts_under(tmp_path)
    assert live.is_dir() and other.is_dir()  # a live process's, and not rdbench's naming


def test_a_disk_that_cannot_be_made_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rdbench.sandbox import SandboxUnavailable

    monkeypatch.setattr("rdbench.sandbox.disk.shutil.which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="apt-get install e2fsprogs"):
        SandboxDisk(tmp_path / "rdbench-docker-1-x", 64)
    assert not list(tmp_path.iterdir())


# ---- a SIGKILLed runner ---------------------------------------------------------------------

# A runner whose agent leaves a `setsid sleep` and a busy loop running, then sleeps.
DRIVER = """
import sys
from rdbench.agents.base import Usage, agent
from rdbench.cli import app

MARK = sys.argv[4]

@agent("leaver")
class Leaver:
    name = "leaver"
    def __init__(self): self.steps = 0
    def reset(self, info, observation): pass
    def act(self, observation):
        self.steps += 1
        if self.steps == 1:
            return {"tool": "bash", "input": {"command":
                f"setsid sleep 31{MARK} >/dev/null 2>&1 & "
                f"bash -c 'while :; do :; done' busy{MARK} >/dev/null 2>&1 & echo left"}}
        return {"tool": "bash", "input": {"command": "sleep 120"}}
    def usage(self): return Usage()

app(["run", "--task", sys.argv[1], "--agent", "leaver", "--out", sys.argv[2],
     "--sandbox", sys.argv[3]])
"""


def _marked_processes(mark: str) -> list[int]:
    """The agent's `setsid sleep` and busy loop (the runner's own command line holds the
    mark only without their prefixes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                if f"31{mark}".encode() in cmdline or f"busy{mark}".encode() in cmdline:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _left_by(pid: int, client: Any) -> list[str]:
    """Everything of runner `pid` still on the host: containers, folders, mounts, cgroups."""
    left = [f"container {c.short_id}" for c in (client.containers.list(
        all=True, filters={"label": f"rdbench.pid={pid}"}) if client else [])]  # fmt: skip
    left += [f"folder {p}" for p in hostdirs.STATE_DIR.glob(f"rdbench-*-{pid}-*")]
    left += [f"mount {p}" for p in hostdirs.mounts_under(hostdirs.STATE_DIR)
             if hostdirs.owner_pid(p) == pid]  # fmt: skip
    left += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/rdbench/{pid}-*")]
    return left


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sigkilled_runner_leaves_nothing_within_seconds(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _config(backend, request)  # the image (docker) or the exported rootfs (bwrap)
    client = request.getfixturevalue("docker_client") if backend == "docker" else None
    mark = str(uuid.uuid4().int % 10**9)
    runner = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(TOY_TASK), str(tmp_path), backend, mark],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert _eventually(lambda: len(_marked_processes(mark)) >= 2 or runner.poll() is not None,
                           within_s=90), "the agent's processes never started"  # fmt: skip
        assert runner.poll() is None, runner.communicate()[1][-2000:]
        assert _left_by(runner.pid, client)  # its sandbox is there
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate()
    killed = time.monotonic()
    def gone() -> bool:
        return not _marked_processes(mark) and not _left_by(runner.pid, client)

    assert _eventually(gone, within_s=10), (_marked_processes(mark), _left_by(runner.pid, client))
    assert time.monotonic() - killed < 10
