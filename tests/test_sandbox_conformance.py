"""The Sandbox protocol, pinned down once and run against every backend (docker and bwrap).

Every network check stays on loopback: the sandbox must have no interface but `lo`, a server
on the host's loopback must be unreachable from inside, and name resolution must fail.
"""

from __future__ import annotations

import io
import os
import random
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import BACKENDS

from rdbench.sandbox import (
    Sandbox,
    SandboxConfig,
    SandboxFileNotFound,
    SandboxOutputLimit,
    make_sandbox,
)
from rdbench.sandbox.base import AGENT_UID, FILE_SIZE_LIMIT, SandboxInputError

CONFIG = SandboxConfig(
    cpus=1.0, memory_mb=512, pids=128, exec_timeout_s=30, output_limit=64_000,
    labels={"rdbench.run": "test-conformance"},
)  # fmt: skip

def start(backend: str, request: pytest.FixtureRequest, config: SandboxConfig = CONFIG) -> Sandbox:
    """A sandbox of `backend` once what it needs is there (or the test skips, or fails in CI)."""
    if backend == "docker":
        image = request.getfixturevalue("sandbox_image")
        client = request.getfixturevalue("docker_client")
        return make_sandbox("docker", replace(config, image=image), client=client)
    request.getfixturevalue("bwrap_rootfs")
    return make_sandbox("bwrap", config)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def any_sandbox(backend: str, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """One agent sandbox per backend, shared by the tests of this module."""
    box = start(backend, request)
    yield box
    box.close()


def python(sandbox: Sandbox, code: str, **options: Any) -> str:
    result = sandbox.exec(["python3", "-c", code], **options)
    assert result.ok, result
    return result.stdout.strip()


# ---- commands -------------------------------------------------------------------------------


def test_sandbox_names_its_backend(any_sandbox: Sandbox, backend: str) -> None:
    assert getattr(any_sandbox, "backend", None) == backend


def test_commands_run_as_the_unprivileged_agent_in_its_home(any_sandbox: Sandbox) -> None:
    assert any_sandbox.exec(["id", "-un"]).stdout.strip() == "agent"
    assert any_sandbox.exec(["id", "-u"]).stdout.strip() == str(AGENT_UID)
    assert any_sandbox.exec(["pwd"]).stdout.strip() == "/home/agent"
    assert any_sandbox.exec(["sh", "-c", "echo $HOME $USER"]).stdout.strip() == "/home/agent agent"


def test_root_on_request(any_sandbox: Sandbox) -> None:
    assert any_sandbox.exec(["id", "-u"], user="root").stdout.strip() == "0"


def test_stdin_cwd_env_and_exit_code(any_sandbox: Sandbox) -> None:
    result = any_sandbox.exec(["sh", "-c", 'cat; echo "$FOO"; pwd; exit 3'],
                              input=b"hello\n", cwd="/tmp", env={"FOO": "bar"})  # fmt: skip
    assert result.stdout == "hello\nbar\n/tmp\n"
    assert result.returncode == 3
    assert not result.ok


def test_the_image_python_and_packages_are_there(any_sandbox: Sandbox) -> None:
    code = "import sys, numpy, sklearn; print(sys.prefix)"
    assert python(any_sandbox, code) == "/opt/rdbench-venv"


def test_binary_and_non_utf8_output_is_decoded_with_replacement(any_sandbox: Sandbox) -> None:
    result = any_sandbox.exec(["sh", "-c", r"printf 'ok\377\376\000end'; printf '\377' >&2"])
    assert result.stdout == "ok\ufffd\ufffd\x00end"
    assert result.stderr == "\ufffd"


def test_output_is_capped_and_flagged(any_sandbox: Sandbox) -> None:
    result = any_sandbox.exec(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"])
    assert result.truncated
    assert result.stdout == "x" * 64_000
    assert result.returncode == 0


def test_huge_output_is_drained_without_holding_it_in_memory(any_sandbox: Sandbox) -> None:
    baseline = _rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = any_sandbox.exec(["sh", "-c", "head -c 500000000 /dev/zero"], timeout=120)
    finally:
        done.set()
        sampler.join()
    assert result.returncode == 0 and result.truncated
    assert len(result.stdout) == 64_000
    assert peak[0] - baseline < 100 * 1024 * 1024, f"RSS grew by {peak[0] - baseline} bytes"


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_timed_out_command_is_killed_with_everything_it_started(any_sandbox: Sandbox) -> None:
    seconds = [str(random.randint(100_000, 999_999) + n) for n in range(3)]
    script = "sleep {} & setsid sleep {} & sleep {}; echo never".format(*seconds)
    started = time.monotonic()
    result = any_sandbox.exec(["sh", "-c", script], timeout=1.5)
    assert result.timed_out and not result.ok
    assert "never" not in result.stdout
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 5
    while _sleeps_alive(seconds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleeps_alive(seconds), "a process the command started survived its timeout"
    assert any_sandbox.exec(["echo", "still works"]).stdout == "still works\n"


def _sleeps_alive(seconds: list[str]) -> list[str]:
    """The `sleep N` processes (for N in `seconds`) alive on this machine: the host sees the
    processes of every sandbox backend."""
    wanted = {f"sleep\0{n}\0".encode() for n in seconds}
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline in wanted:
                alive.append(entry)
    return alive


def test_memory_hog_is_killed_and_said_to_be_out_of_memory(any_sandbox: Sandbox) -> None:
    code = "b = bytearray(1024 * 1024 * 1024); b[::4096] = b'x' * (len(b) // 4096)"
    result = any_sandbox.exec(["python3", "-c", code], timeout=60)
    assert result.returncode == 137, result
    assert "[rdbench: killed: out of memory (limit 512 MB)]" in result.stderr
    assert any_sandbox.exec(["echo", "alive"]).stdout == "alive\n"


def test_files_may_not_grow_past_the_size_limit(any_sandbox: Sandbox) -> None:
    limits = any_sandbox.exec(["cat", "/proc/self/limits"]).stdout
    file_size = next(line for line in limits.splitlines() if line.startswith("Max file size"))
    assert file_size.split()[3:5] == [str(FILE_SIZE_LIMIT)] * 2


# ---- isolation ------------------------------------------------------------------------------


def test_agent_cannot_write_system_files_or_become_root(any_sandbox: Sandbox) -> None:
    assert not any_sandbox.exec(["sh", "-c", "echo x > /etc/passwd"]).ok
    assert not any_sandbox.exec(["sh", "-c", "echo x > /usr/x"]).ok
    assert not any_sandbox.exec(["sh", "-c", "echo x > /etc/rdbench-x"]).ok
    assert not any_sandbox.exec(["python3", "-c", "import os; os.setuid(0)"]).ok


def test_agent_has_no_capabilities_and_no_new_privileges(any_sandbox: Sandbox) -> None:
    status = dict(
        line.split(":\t", 1)
        for line in any_sandbox.exec(["cat", "/proc/self/status"]).stdout.splitlines()
        if ":\t" in line
    )
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["CapPrm"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"


def test_agent_cannot_read_grader_files(any_sandbox: Sandbox) -> None:
    any_sandbox.write_file("/grader/secret.txt", "answer", user="root")
    assert not any_sandbox.exec(["cat", "/grader/secret.txt"]).ok
    assert not any_sandbox.exec(["ls", "/grader"]).ok
    assert any_sandbox.exec(["cat", "/grader/secret.txt"], user="root").stdout == "answer"


def test_root_cannot_switch_users_in_an_agent_sandbox(any_sandbox: Sandbox) -> None:
    result = any_sandbox.exec(["python3", "-c", SWITCH_TO_AGENT], user="root")
    assert not result.ok


SWITCH_TO_AGENT = (
    "import subprocess\n"
    f"print(subprocess.run(['id', '-u'], user={AGENT_UID}, group={AGENT_UID}, extra_groups=[],\n"
    "                     capture_output=True, text=True, check=True).stdout.strip())\n"
)


def test_root_may_run_code_as_the_agent_in_a_grading_sandbox(
    backend: str, request: pytest.FixtureRequest
) -> None:
    box = start(backend, request, replace(CONFIG, grading=True))
    try:
        assert python(box, SWITCH_TO_AGENT, user="root") == str(AGENT_UID)
        assert box.exec(["id", "-u"]).stdout.strip() == str(AGENT_UID)
    finally:
        box.close()


def test_only_loopback_interface(any_sandbox: Sandbox) -> None:
    code = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"
    assert python(any_sandbox, code) == "['lo']"


def test_server_on_host_loopback_cannot_be_reached_from_inside(
    any_sandbox: Sandbox, host_server: tuple[int, list[Any]]
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
    assert python(any_sandbox, code).startswith("refused")
    assert len(accepted) == 1  # only the host's own probe


def test_name_resolution_fails(any_sandbox: Sandbox) -> None:
    code = (
        "import socket\n"
        "try:\n    socket.getaddrinfo('rdbench-test.invalid', 80)\n    print('resolved')\n"
        "except socket.gaierror:\n    print('failed')\n"
    )
    assert python(any_sandbox, code, timeout=20) == "failed"


# ---- walls, as Docker's ---------------------------------------------------------------------

# Each prints "refused" when the sandbox stops it (and something else when it works).
KEYRING_CALL = (
    "import ctypes, platform\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "add_key, keyctl = {'x86_64': (248, 250), 'aarch64': (217, 219)}[platform.machine()]\n"
    "result = CALL\n"
    "print('refused' if result == -1 else f'worked {result}')\n"
)
ESCAPES = {
    "unshare -r": "unshare -r true && echo worked || echo refused",
    "unshare -Urm": "unshare -Urm true && echo worked || echo refused",
    "add_key": "python3 -c \"" + KEYRING_CALL.replace(
        "CALL", "libc.syscall(add_key, b'user', b'rdbench', b'x', 1, -3)") + "\"",
    "keyctl join": "python3 -c \"" + KEYRING_CALL.replace(
        "CALL", "libc.syscall(keyctl, 1, None)") + "\"",
    "mount tmpfs": "mount -t tmpfs none /mnt && echo worked || echo refused",
    "write /proc/sys": "(echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo worked "
                       "|| echo refused",
}  # fmt: skip


@pytest.fixture(scope="module")
def grading_sandbox(backend: str, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A grading sandbox per backend (its root keeps the capabilities to run the agent's code
    as the agent), shared by the tests of this module."""
    box = start(backend, request, replace(CONFIG, grading=True))
    yield box
    box.close()


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_the_agent_cannot_make_namespaces_mount_use_keyrings_or_set_sysctls(
    any_sandbox: Sandbox, escape: str
) -> None:
    result = any_sandbox.exec(["bash", "-c", ESCAPES[escape]])
    assert result.stdout.strip().splitlines()[-1] == "refused", result


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_root_in_a_grading_sandbox_cannot_either(grading_sandbox: Sandbox, escape: str) -> None:
    result = grading_sandbox.exec(["bash", "-c", ESCAPES[escape]], user="root")
    assert result.stdout.strip().splitlines()[-1] == "refused", result


@pytest.mark.parametrize(
    "target", ["/etc/rdbench-x", "/usr/rdbench-x", "/proc/sys/kernel/domainname"]
)
@pytest.mark.parametrize("user", ["agent", "root"])
def test_nobody_writes_the_system_not_even_root_in_a_grading_sandbox(
    grading_sandbox: Sandbox, user: str, target: str
) -> None:
    result = grading_sandbox.exec(["sh", "-c", f"echo x > {target}"], user=user)
    assert not result.ok, result
    reasons = ["Read-only file system"] if user == "root" else ["Read-only", "Permission denied"]
    assert any(reason in result.stderr for reason in reasons), result


def test_the_agents_bounding_set_is_empty(any_sandbox: Sandbox) -> None:
    status = any_sandbox.exec(["grep", "^CapBnd:", "/proc/self/status"]).stdout
    assert status.split() == ["CapBnd:", "0000000000000000"]


def test_dev_shm_holds_64_mb_and_dev_mqueue_is_there(any_sandbox: Sandbox) -> None:
    code = "import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)"
    assert int(python(any_sandbox, code)) == 64 * 1024 * 1024
    assert any_sandbox.exec(["stat", "-f", "-c", "%T", "/dev/mqueue"]).stdout.strip() == "mqueue"


def test_sys_is_read_only_and_shows_the_cpus(any_sandbox: Sandbox) -> None:
    assert any_sandbox.exec(["test", "-d", "/sys/devices/system/cpu/cpu0"]).ok
    for user in ("agent", "root"):
        assert not any_sandbox.exec(["sh", "-c", "echo x > /sys/rdbench-x"], user=user).ok


def test_pwd_and_pid_1s_command_line_show_no_host_path(any_sandbox: Sandbox) -> None:
    code = "import os; print(os.environ.get('PWD'))"  # docker sets none
    assert python(any_sandbox, code) in ("/home/agent", "None")
    assert python(any_sandbox, code, cwd="/tmp") in ("/tmp", "None")
    cmdline = any_sandbox.exec(["cat", "/proc/1/cmdline"]).stdout.replace("\0", " ")
    assert cmdline.strip(), "pid 1's command line should be readable"
    for host_detail in (os.getcwd(), "/var/tmp", "rdbench-", ".cache", f" {os.getpid()}"):
        assert host_detail not in cmdline, cmdline


def test_resolv_conf_names_no_name_server_of_the_host(any_sandbox: Sandbox) -> None:
    host = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    servers = {line.split()[1] for line in host.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1}  # fmt: skip
    inside = any_sandbox.exec(["cat", "/etc/resolv.conf"]).stdout
    assert not {server for server in servers if server in inside}, inside


def test_a_nul_byte_in_a_command_or_path_is_a_typed_error(any_sandbox: Sandbox) -> None:
    with pytest.raises(SandboxInputError):
        any_sandbox.exec(["cat", "a\0b"])
    with pytest.raises(SandboxInputError):
        any_sandbox.exec(["true"], env={"X": "a\0b"})
    with pytest.raises(SandboxInputError):
        any_sandbox.read_file("a\0b")
    assert any_sandbox.exec(["true"]).ok


# ---- files ----------------------------------------------------------------------------------


def test_file_round_trip_binary(any_sandbox: Sandbox) -> None:
    data = bytes(range(256)) * 100
    any_sandbox.write_file("nested/dir/blob.bin", data)
    assert any_sandbox.read_file("/home/agent/nested/dir/blob.bin") == data
    owner = any_sandbox.exec(["stat", "-c", "%U", "/home/agent/nested/dir/blob.bin"]).stdout
    assert owner.strip() == "agent"
    assert any_sandbox.exec(["sh", "-c", "echo more >> nested/dir/blob.bin"]).ok
    assert any_sandbox.read_file("nested/dir/blob.bin") == data + b"more\n"


def test_text_is_written_as_utf8_and_replaced(any_sandbox: Sandbox) -> None:
    any_sandbox.write_file("note.txt", "first ✓")
    any_sandbox.write_file("note.txt", "second ✓")
    assert any_sandbox.read_file("note.txt") == "second ✓".encode()


def test_large_file_round_trip(any_sandbox: Sandbox) -> None:
    data = random.randbytes(50 * 1024 * 1024)
    any_sandbox.write_file("/tmp/large.bin", data)
    assert any_sandbox.exec(["stat", "-c", "%s", "/tmp/large.bin"]).stdout.strip() == str(len(data))
    assert any_sandbox.read_file("/tmp/large.bin") == data
    any_sandbox.exec(["rm", "/tmp/large.bin"]).check()


def test_file_written_for_root_is_root_owned(any_sandbox: Sandbox) -> None:
    any_sandbox.write_file("/tmp/root-owned.txt", "x", user="root")
    owner = any_sandbox.exec(["stat", "-c", "%U", "/tmp/root-owned.txt"]).stdout.strip()
    assert owner == "root"


def test_reading_a_missing_file_is_a_typed_error(any_sandbox: Sandbox) -> None:
    with pytest.raises(SandboxFileNotFound):
        any_sandbox.read_file("/home/agent/does-not-exist.txt")
    with pytest.raises(FileNotFoundError):  # SandboxFileNotFound is one
        any_sandbox.read_file("/nowhere/at/all")


def test_reading_past_max_bytes_is_a_typed_error(any_sandbox: Sandbox) -> None:
    any_sandbox.write_file("/tmp/ten.txt", "0123456789")
    read_file: Any = any_sandbox.read_file  # max_bytes is beyond the protocol
    assert read_file("/tmp/ten.txt", max_bytes=10) == b"0123456789"
    with pytest.raises(SandboxOutputLimit):
        read_file("/tmp/ten.txt", max_bytes=9)


def test_put_dir_and_get_dir_round_trip(any_sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "train.py").write_text("print('hi')\n")
    (source / "sub" / "data.bin").write_bytes(bytes(range(256)))
    (source / "sub" / "deeper" / "empty.txt").write_text("")
    any_sandbox.exec(["mkdir", "-p", "project"]).check()
    any_sandbox.put_dir(str(source), "/home/agent/project")
    assert any_sandbox.exec(["python3", "project/train.py"]).stdout == "hi\n"
    assert any_sandbox.exec(["touch", "project/sub/made-inside"]).ok  # the agent owns them

    archive = any_sandbox.get_dir("/home/agent/project")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"train.py", "sub/data.bin", "sub/deeper/empty.txt", "sub/made-inside"} <= names
    target = tmp_path / "back"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(target, filter="data")
    assert (target / "sub" / "data.bin").read_bytes() == bytes(range(256))
    assert (target / "train.py").read_text() == "print('hi')\n"


def test_get_dir_of_a_missing_folder_is_a_typed_error(any_sandbox: Sandbox) -> None:
    with pytest.raises(SandboxFileNotFound):
        any_sandbox.get_dir("/home/agent/no-such-folder")


def test_close_is_idempotent(backend: str, request: pytest.FixtureRequest) -> None:
    box = start(backend, request)
    assert box.exec(["true"]).ok
    box.close()
    box.close()
