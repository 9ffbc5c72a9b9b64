"""The bwrap backend beyond the protocol: cgroup limits, containment, its folders, its
read-only system, and the exported root filesystem it runs on."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rdbench.sandbox import SandboxConfig, SandboxUnavailable, make_sandbox, seccomp
from rdbench.sandbox.base import AGENT_UID
from rdbench.sandbox.bwrap import BwrapSandbox, bwrap_problem, remove_leftovers
from rdbench.sandbox.cgroups import SandboxCgroups

CONFIG = SandboxConfig(cpus=1.0, memory_mb=256, pids=64, exec_timeout_s=30, output_limit=64_000)


@pytest.fixture(scope="module")
def sandbox(bwrap_rootfs: str) -> Iterator[BwrapSandbox]:
    box = BwrapSandbox(CONFIG)
    yield box
    box.close()


@pytest.mark.bwrap
def test_memory_hog_is_killed_and_reported_as_out_of_memory(sandbox: BwrapSandbox) -> None:
    code = "b = bytearray(512 * 1024 * 1024); b[::4096] = b'x' * (len(b) // 4096)"
    result = sandbox.exec(["python3", "-c", code], timeout=60)
    assert result.returncode == 137
    assert "[rdbench: killed: out of memory (limit 256 MB)]" in result.stderr
    assert sandbox.exec(["echo", "alive"]).stdout == "alive\n"


@pytest.mark.bwrap
def test_fork_bomb_is_contained(sandbox: BwrapSandbox) -> None:
    assert sandbox.cgroups is not None
    outcome: list[Any] = []
    bomb = threading.Thread(target=lambda: outcome.append(
        sandbox.exec(["bash", "-c", ":(){ :|:& };:; sleep 60"], timeout=10)))
    started = time.monotonic()
    bomb.start()
    time.sleep(3)  # the bomb is at the limit by now
    assert bomb.is_alive()
    assert _pids_in(sandbox.cgroups.dirs["pids"]) <= CONFIG.pids
    host = time.monotonic()
    subprocess.run(["true"], check=True)  # the host still forks at once
    assert time.monotonic() - host < 2
    bomb.join(30)
    result = outcome[0]
    assert result.timed_out and time.monotonic() - started < 20
    assert "Resource temporarily unavailable" in result.stderr  # fork failed at pids.max
    assert _pids_in(sandbox.cgroups.dirs["pids"], but="init") == 0  # only the holder is left
    assert sandbox.exec(["echo", "alive"]).stdout == "alive\n"


def _pids_in(group: Path, but: str = "") -> int:
    """The processes in `group` and below it, except in its child group `but`."""
    return sum(len((path / "cgroup.procs").read_text().split()) for path in group.glob("**/")
               if not but or path.name != but)  # fmt: skip


@pytest.mark.bwrap
def test_limits_are_set_on_the_sandbox_cgroups(sandbox: BwrapSandbox) -> None:
    assert sandbox.cgroups is not None
    dirs = sandbox.cgroups.dirs
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
    assert (dirs["pids"] / "pids.max").read_text().strip() == "64"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "100000"
    limits = sandbox.exec(["cat", "/proc/self/limits"], timeout=20).stdout
    file_size = next(line for line in limits.splitlines() if line.startswith("Max file size"))
    assert file_size.split()[3] == str(2 * 1024**3)
    cpu_time = next(line for line in limits.splitlines() if line.startswith("Max cpu time"))
    assert cpu_time.split()[3] == "30"  # 20 s x 1 cpu + the margin


@pytest.mark.bwrap
@pytest.mark.parametrize("shell", ["sh", "bash", "/bin/bash", "dash"])
def test_a_shell_command_has_the_same_file_size_limit(sandbox: BwrapSandbox, shell: str) -> None:
    """The limits open a shell's own `-c` script, in that shell's `ulimit -f` unit (bash
    counts 1024-byte blocks, sh 512-byte ones)."""
    limits = sandbox.exec([shell, "-c", "cat /proc/self/limits"], timeout=20).stdout
    file_size = next(line for line in limits.splitlines() if line.startswith("Max file size"))
    assert file_size.split()[3:5] == [str(2 * 1024**3)] * 2, (shell, file_size)


@pytest.mark.bwrap
def test_background_processes_live_until_the_sandbox_closes(bwrap_rootfs: str) -> None:
    seconds = str(random.randint(100_000, 999_999))
    sleeper = f"sleep\0{seconds}\0".encode()
    box = BwrapSandbox(CONFIG)
    try:
        started = box.exec(["sh", "-c", f"setsid sleep {seconds} >/dev/null 2>&1 & echo ok"])
        assert started.stdout == "ok\n"
        assert _eventually(lambda: bool(_processes_with_cmdline(sleeper)))
        assert box.exec(["pgrep", "-x", "sleep"]).ok  # seen by the next command
    finally:
        box.close()
    assert not _processes_with_cmdline(sleeper)


@pytest.mark.bwrap
def test_the_sandbox_dies_with_rdbench(bwrap_rootfs: str) -> None:
    seconds = str(random.randint(100_000, 999_999))
    sleeper = f"sleep\0{seconds}\0".encode()
    script = (
        "import sys, time\n"
        "from rdbench.sandbox.bwrap import BwrapSandbox\n"
        "from rdbench.sandbox.base import SandboxConfig\n"
        "box = BwrapSandbox(SandboxConfig(memory_mb=256, pids=64))\n"
        f"box.exec(['sh', '-c', 'setsid sleep {seconds} >/dev/null 2>&1 &'])\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        assert "started\n" in iter(runner.stdout.readline, "")  # after structlog's lines
        assert _eventually(lambda: bool(_processes_with_cmdline(sleeper)))
    finally:
        runner.kill()  # SIGKILL: rdbench cleans nothing up itself
        runner.wait()
    assert _eventually(lambda: not _processes_with_cmdline(sleeper)), "it outlived rdbench"
    # its reaper removes its folders, disk and cgroups, with no gc
    assert _eventually(lambda: not list(Path("/var/tmp").glob(f"rdbench-bwrap-{runner.pid}-*")))
    assert _eventually(lambda: not list(Path("/sys/fs/cgroup").glob(f"*/rdbench/{runner.pid}-*")))


def _eventually(condition: Callable[[], bool], within_s: float = 10.0) -> bool:
    """True once `condition()` is, False if it still is not after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _processes_with_cmdline(cmdline: bytes) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path("/proc", entry, "cmdline").read_bytes() == cmdline:
                    found.append(entry)
            except OSError:
                continue
    return found


@pytest.mark.bwrap
def test_system_is_read_only_and_home_and_tmp_are_writable(sandbox: BwrapSandbox) -> None:
    for user in ("agent", "root"):
        result = sandbox.exec(["sh", "-c", "echo x > /usr/x"], user=user)
        assert not result.ok and "Read-only file system" in result.stderr
    assert sandbox.exec(["sh", "-c", "echo x > /home/agent/x && echo y > /tmp/y"]).ok
    assert (sandbox.dir / "home" / "x").stat().st_uid == AGENT_UID


@pytest.mark.bwrap
def test_grader_folder_is_root_only_on_the_host_too(sandbox: BwrapSandbox) -> None:
    grader = (sandbox.dir / "grader").stat()
    assert grader.st_uid == 0 and grader.st_mode & 0o777 == 0o700
    assert sandbox.dir.stat().st_mode & 0o777 == 0o700
    assert not sandbox.exec(["ls", "/grader"]).ok


@pytest.mark.bwrap
def test_writing_outside_the_writable_folders_says_so(sandbox: BwrapSandbox) -> None:
    with pytest.raises(Exception, match="read-only outside /home/agent"):
        sandbox.write_file("/etc/motd", "hi", user="root")


@pytest.mark.bwrap
def test_the_callers_environment_reaches_only_the_unprivileged_command(
    sandbox: BwrapSandbox,
) -> None:
    result = sandbox.exec(["true"], env={"LD_PRELOAD": "/home/agent/missing.so"})
    assert result.ok
    assert result.stderr.count("missing.so") == 1  # true, never setpriv (still privileged)


@pytest.mark.bwrap
def test_unknown_user_is_rejected(sandbox: BwrapSandbox) -> None:
    with pytest.raises(ValueError, match="agent' or 'root'"):
        sandbox.exec(["true"], user="nobody")


@pytest.mark.bwrap
def test_close_removes_cgroups_and_folders(bwrap_rootfs: str) -> None:
    box = BwrapSandbox(CONFIG)
    assert box.exec(["true"]).ok
    assert box.cgroups is not None
    groups = list(box.cgroups.dirs.values())
    assert all(path.is_dir() for path in groups) and box.dir.is_dir()
    box.close()
    assert not any(path.exists() for path in groups)
    assert not box.dir.exists()
    with pytest.raises(SandboxUnavailable, match="closed"):
        box.exec(["true"])


@pytest.mark.bwrap
def test_gc_removes_sandboxes_whose_process_is_gone(bwrap_rootfs: str, tmp_path: Path) -> None:
    box = BwrapSandbox(CONFIG, state_dir=tmp_path)
    dead = box.dir.with_name("rdbench-bwrap-999999999-deadbeef00")
    dead.mkdir()
    try:
        assert "999999999-deadbeef00" in remove_leftovers(state_dir=tmp_path)
        assert not dead.exists() and box.dir.exists()  # the live sandbox stays
    finally:
        box.close()


def test_no_cgroups_means_a_warning_not_a_failure(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        groups = SandboxCgroups.create("x", memory_mb=1, pids=1, cpus=1, root=tmp_path)
    assert groups is None
    assert logs[0]["event"] == "sandbox.bwrap.no_cgroups"


def test_missing_bwrap_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rdbench.sandbox.bwrap.shutil.which", lambda name: None)
    assert "apt-get install bubblewrap" in (bwrap_problem() or "")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        make_sandbox("bwrap", CONFIG)


def test_bwrap_without_root_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rdbench.sandbox.bwrap.shutil.which", lambda name: "/usr/bin/bwrap")
    monkeypatch.setattr("rdbench.sandbox.bwrap.os.geteuid", lambda: 1000)
    assert "needs root" in (bwrap_problem() or "")


# ---- the root filesystem --------------------------------------------------------------------


def test_missing_rootfs_without_docker_says_how_to_make_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rdbench.sandbox.rootfs import ensure_rootfs

    def no_engine() -> Any:
        raise SandboxUnavailable("No Docker engine answered")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("rdbench.sandbox.docker.connect", no_engine)
    with pytest.raises(SandboxUnavailable, match="rdbench image build"):
        ensure_rootfs("rdbench-sandbox:0123456789ab")


@pytest.mark.docker
def test_export_is_cached_and_complete(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rdbench.image import bootstrap_base_image
    from rdbench.sandbox.rootfs import ensure_rootfs, image_env

    base = bootstrap_base_image(docker_client)  # small: Debian with python3 and util-linux
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = ensure_rootfs(base, client=docker_client)
    assert (root / "usr" / "bin" / "setpriv").exists()
    assert "localhost" in (root / "etc" / "hosts").read_text()
    assert not (root / ".dockerenv").exists()
    assert image_env(root)["LANG"] == "C.UTF-8"
    folders = sorted(path.name for path in root.parent.parent.iterdir())
    assert folders == [".lock", root.parent.name]  # no half-made exports left behind
    assert ensure_rootfs(base, client=None) == root  # cached: Docker is not asked again


@pytest.mark.bwrap
def test_a_command_after_the_sandbox_died_fails_and_runs_nowhere(bwrap_rootfs: str) -> None:
    box = BwrapSandbox(CONFIG)
    try:
        assert box.exec(["true"]).ok
        assert box._holder is not None
        box._holder._proc.kill()  # bwrap, and with it the sandbox's init
        box._holder._proc.wait()
        marker = f"/tmp/rdbench-ran-{random.randint(0, 10**9)}"
        with pytest.raises(SandboxUnavailable, match="has ended"):
            box.exec(["touch", marker])
        assert not os.path.exists(marker)  # not on the host either
    finally:
        box.close()


# ---- walls ----------------------------------------------------------------------------------


@pytest.mark.bwrap
def test_the_sandboxs_init_runs_under_the_seccomp_filter(sandbox: BwrapSandbox) -> None:
    status = sandbox.exec(["grep", "^Seccomp:", "/proc/1/status", "/proc/self/status"]).stdout
    assert status.split() == ["/proc/1/status:Seccomp:", "2", "/proc/self/status:Seccomp:", "2"]


@pytest.mark.bwrap
def test_threads_and_processes_start_under_the_filter(sandbox: BwrapSandbox) -> None:
    # clone3 answers ENOSYS: the C library must fall back to clone for both
    code = (
        "import subprocess, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=seen.append, args=('thread',)); t.start(); t.join()\n"
        "out = subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip()\n"
        "print(*seen, out)\n"
    )
    assert sandbox.exec(["python3", "-c", code]).stdout.strip() == "thread child"


def test_the_seccomp_program_is_valid_bpf_for_the_running_kernel() -> None:
    """The filter loads (the kernel checks every jump) and refuses unshare in a child."""
    code = (
        "import ctypes\n"
        "from rdbench.sandbox import process, seccomp\n"
        "process._no_new_privs(); seccomp.install()\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('refused' if libc.unshare(0x10000000) == -1 and ctypes.get_errno() == 1 "
        "else 'worked')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "refused", result.stderr


@pytest.mark.parametrize(
    ("header", "arch"),
    [
        ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", seccomp.X86_64),
        ("/usr/include/asm-generic/unistd.h", seccomp.AARCH64),
    ],
    ids=["x86_64", "aarch64"],
)
def test_the_seccomp_numbers_match_the_kernel_headers(header: str, arch: seccomp.Arch) -> None:
    if not Path(header).exists():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    defined = dict(re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", Path(header).read_text()))
    assert {name: str(number) for name, number in arch.numbers.items()} == {
        name: defined[name] for name in arch.numbers
    }


# ---- the CPU counter a grader reads ---------------------------------------------------------

GRADING_KIT = Path(__file__).resolve().parents[1] / "rdbench" / "grading_kit.py"
# A grader's measure of one run of the agent's code: the counter's rise minus its own CPU time,
# and the process tree's (the CPU time of the children it waited for). The agent's process
# ignores SIGCHLD and hands 0.5 s of work to a child, which the kernel reaps with nobody's
# accounting; the parent stays until then (os.wait returns ECHILD once the child is gone).
MEASURE_HAND_OFF = """
import resource, subprocess, sys
sys.path.insert(0, '/grader')
from rdbench_grading import CpuCounter, grader_cpu_s
AGENT = '''
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
if os.fork() == 0:
    end = time.process_time() + 0.5
    while time.process_time() < end:
        pass
    os._exit(0)
try:
    os.wait()
except ChildProcessError:
    pass
'''
counter = CpuCounter.find()
before = counter.seconds() - grader_cpu_s()
subprocess.run(['setpriv', '--reuid=agent', '--regid=agent', '--clear-groups', sys.executable,
                '-c', AGENT], check=True)
rise = counter.seconds() - grader_cpu_s() - before
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(counter.path, rise, children.ru_utime + children.ru_stime)
"""
# Every way a process inside might change the counter or leave its group, as root.
TAMPER = """
import errno, os
group = '/sys/fs/cgroup/cpuacct'
leaf = [name for name in os.listdir(group) if name.startswith('exec-')][0]
attempts = {'reset': (f'{group}/cpuacct.usage', '0'), 'leave': (f'{group}/cgroup.procs', '1'),
            'leave_thread': (f'{group}/tasks', str(os.getpid())),
            'move': (f'{group}/init/cgroup.procs', str(os.getpid())),
            'move_leaf': (f'{group}/{leaf}/cgroup.procs', str(os.getpid()))}
for what, (path, value) in attempts.items():
    try:
        with open(path, 'w') as handle:
            handle.write(value)
        print(what, 'written')
    except OSError as error:
        print(what, errno.errorcode[error.errno])
try:
    os.mkdir(f'{group}/mine')
    print('mkdir made')
except OSError as error:
    print('mkdir', errno.errorcode[error.errno])
"""
# Remounting the group read-write (MS_REMOUNT | MS_BIND): the seccomp filter refuses mounts.
REMOUNT = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
done = libc.mount(b'none', b'/sys/fs/cgroup/cpuacct', None, 32 | 4096, None) == 0
print('remounted' if done else errno.errorcode[ctypes.get_errno()])
"""


@pytest.fixture(scope="module")
def grading_sandbox(bwrap_rootfs: str) -> Iterator[BwrapSandbox]:
    """A grading sandbox (root keeps the capabilities to act as the agent) with the grading
    kit where graders import it from."""
    box = BwrapSandbox(SandboxConfig(cpus=2.0, memory_mb=512, pids=64, grading=True))
    box.write_file("/grader/rdbench_grading.py", GRADING_KIT.read_bytes(), user="root")
    yield box
    box.close()


@pytest.mark.bwrap
def test_the_grader_counts_a_child_nobody_waited_for_on_the_sandboxs_counter(
    grading_sandbox: BwrapSandbox,
) -> None:
    result = grading_sandbox.exec(["python3", "-c", MEASURE_HAND_OFF], user="root", timeout=60)
    assert result.ok, result.stderr
    path, rise, waited = result.stdout.split()
    assert path == "/sys/fs/cgroup/cpuacct/cpuacct.usage"  # the sandbox's, not the command's
    assert float(rise) >= 0.3, result.stdout
    assert float(waited) < 0.1, result.stdout  # what the process tree would have seen


@pytest.mark.bwrap
def test_the_counter_rises_with_every_process_of_the_sandbox(
    grading_sandbox: BwrapSandbox,
) -> None:
    assert grading_sandbox.cgroups is not None and grading_sandbox.cgroups.accounting
    usage = grading_sandbox.cgroups.accounting / "cpuacct.usage"
    before = int(usage.read_text())
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    assert grading_sandbox.exec(["python3", "-c", burn]).ok
    assert (int(usage.read_text()) - before) * 1e-9 >= 0.3


@pytest.mark.bwrap
def test_nothing_inside_can_write_to_the_cgroup_counter(grading_sandbox: BwrapSandbox) -> None:
    assert grading_sandbox.cgroups is not None and grading_sandbox.cgroups.accounting
    usage = grading_sandbox.cgroups.accounting / "cpuacct.usage"
    before = int(usage.read_text())
    for user in ("root", "agent"):
        result = grading_sandbox.exec(["python3", "-c", TAMPER], user=user)
        assert result.ok, result.stderr
        outcomes = dict(line.split() for line in result.stdout.splitlines())
        assert set(outcomes) == {"reset", "leave", "leave_thread", "move", "move_leaf", "mkdir"}
        assert set(outcomes.values()) <= {"EROFS", "EACCES"}, (user, outcomes)
    remount = grading_sandbox.exec(["python3", "-c", REMOUNT], user="root")
    assert remount.stdout.strip() == "EPERM", remount.stderr
    assert int(usage.read_text()) >= before  # never reset


def test_cpu_accounting_is_the_cpu_group_where_cpuacct_is_mounted_with_it(
    tmp_path: Path,
) -> None:
    for controller in ("memory", "pids", "cpu"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").touch()
    (tmp_path / "cpu" / "cpuacct.usage").touch()  # cpu,cpuacct mounted together
    groups = SandboxCgroups.create("x", memory_mb=1, pids=1, cpus=1, root=tmp_path)
    assert groups is not None
    assert groups.accounting == tmp_path / "cpu" / "rdbench" / "x"
    assert set(groups.dirs) == {"memory", "pids", "cpu"}


def test_missing_cpuacct_means_a_warning_and_no_counter(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    for controller in ("memory", "pids", "cpu"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").touch()
    with capture_logs() as logs:
        groups = SandboxCgroups.create("x", memory_mb=1, pids=1, cpus=1, root=tmp_path)
    assert groups is not None and groups.accounting is None
    assert set(groups.dirs) == {"memory", "pids", "cpu"}
    assert [log["event"] for log in logs] == ["sandbox.bwrap.no_cpu_accounting"]


@pytest.mark.parametrize(
    ("mount_root", "group", "expected"),
    [
        ("/..", "/../exec-3", "/m/cpuacct.usage"),  # bwrap: the sandbox's group, not the leaf
        ("/docker/0d88", "/docker/0d88", "/m/cpuacct.usage"),  # Docker, cgroup v1
        ("/", "/", "/m/cpuacct.usage"),  # a container in its own cgroup namespace
        ("/", "/user.slice/x", "/m/user.slice/x/cpuacct.usage"),  # a host: its own group
        ("/", "/../x", None),  # a group outside the mount
    ],
    ids=["bwrap", "docker-v1", "own-namespace", "host", "outside"],
)
def test_the_cpu_counter_is_the_group_the_sandbox_mounted(
    mount_root: str, group: str, expected: str | None
) -> None:
    from rdbench.grading_kit import _below

    assert _below("/m", mount_root, group, "cpuacct.usage") == expected
