"""Checks of the walls: no network but loopback (a server on the host's own loopback stays out
of reach, names do not resolve), no namespaces, mounts, keyrings or capabilities, grader and
host files out of reach, a system nobody can write.

Every probe stays on loopback and on this machine, and leaves nothing changed even against a
backend with no walls: a system file is only opened for appending nothing, a file made to
prove a folder writable is removed, a sysctl is written its own value, a mount is made on a
fresh empty folder and undone.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rdbench.sandbox.base import Sandbox
from rdbench.sandbox.conformance.checks import Context, check, expect, python, said

INTERFACES = "import socket; print(sorted(name for _, name in socket.if_nameindex()))"


def interfaces(sandbox: Sandbox) -> str:
    """The network interfaces the sandbox sees, as a Python list's text."""
    return python(sandbox, INTERFACES)


@check("isolation")
def only_the_loopback_interface(ctx: Context) -> None:
    """The sandbox has no network interface but loopback (`lo`)."""
    seen = interfaces(ctx.sandbox)
    expect(seen == "['lo']", f"the sandbox has the network interfaces {seen}")


@contextmanager
def host_loopback_server() -> Iterator[tuple[int, list[object]]]:
    """A TCP server on the host's 127.0.0.1 recording every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        server.close()


@check("isolation")
def a_server_on_the_host_loopback_is_unreachable(ctx: Context) -> None:
    """A server listening on the host's own loopback (127.0.0.1) cannot be reached from
    inside."""
    with host_loopback_server() as (port, accepted):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the server works
        code = (
            "import socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('connected')\n"
            "except OSError as e:\n    print('refused', type(e).__name__)\n"
        )
        answer = python(ctx.sandbox, code, timeout=30)
        reached = len(accepted) - 1  # less the host's own probe
    expect(answer.startswith("refused") and reached == 0,
           f"the sandbox connected to the host's 127.0.0.1:{port}")  # fmt: skip


@check("isolation")
def names_do_not_resolve(ctx: Context) -> None:
    """Name resolution fails inside (tried only when the sandbox has no interface but `lo`,
    so that no query can leave the machine)."""
    seen = interfaces(ctx.sandbox)
    expect(seen == "['lo']", f"not tried: the sandbox has the network interfaces {seen}, so a "
           "name query could leave the machine")  # fmt: skip
    code = (
        "import socket\n"
        "try:\n    socket.getaddrinfo('rdbench-test.invalid', 80)\n    print('resolved')\n"
        "except socket.gaierror:\n    print('failed')\n"
    )
    expect(python(ctx.sandbox, code, timeout=20) == "failed", "a name resolved inside")


@check("isolation")
def resolv_conf_names_no_name_server_of_the_host(ctx: Context) -> None:
    """The sandbox's /etc/resolv.conf names none of the host's name servers."""
    host = Path("/etc/resolv.conf")
    text = host.read_text() if host.exists() else ""
    servers = {line.split()[1] for line in text.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1}  # fmt: skip
    inside = ctx.sandbox.exec(["cat", "/etc/resolv.conf"]).stdout
    named = sorted(server for server in servers if server in inside)
    expect(not named, f"the sandbox's resolv.conf names the host's name server(s) {named}")


@check("isolation")
def the_agent_has_no_capabilities(ctx: Context) -> None:
    """The agent has no capabilities (effective, permitted, bounding set) and no new
    privileges."""
    lines = ctx.sandbox.exec(["cat", "/proc/self/status"]).stdout.splitlines()
    status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    wanted = {"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
              "CapBnd": "0000000000000000", "NoNewPrivs": "1"}  # fmt: skip
    wrong = [f"{key} is {status.get(key, '?').strip()}" for key, value in wanted.items()
             if status.get(key, "").strip() != value]  # fmt: skip
    expect(not wrong, "; ".join(wrong))


# Each prints "refused" when the sandbox stops it, something else when it works; none changes
# anything that outlives it.
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
        "CALL", "libc.syscall(add_key, b'user', b'rdbench', b'x', 1, -2)") + "\"",
    "keyctl join": "python3 -c \"" + KEYRING_CALL.replace(
        "CALL", "libc.syscall(keyctl, 1, None)") + "\"",
    "mount tmpfs": 'd=$(mktemp -d) && { mount -t tmpfs none "$d" 2>/dev/null && umount "$d" '
                   '&& echo worked || echo refused; }; rmdir "$d" 2>/dev/null; true',
    "write /proc/sys": "(cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname) "
                       "2>/dev/null && echo worked || echo refused",
}  # fmt: skip


def _escapes_that_worked(sandbox: Sandbox, user: str) -> list[str]:
    worked = []
    for name, script in ESCAPES.items():
        result = sandbox.exec(["bash", "-c", script], user=user)
        lines = result.stdout.strip().splitlines()
        if not lines or lines[-1] != "refused":
            worked.append(name)
    return worked


@check("isolation")
def the_agent_cannot_make_namespaces_mount_use_keyrings_or_set_sysctls(ctx: Context) -> None:
    """The agent can make no namespace, mount nothing, use no keyring, set no sysctl."""
    worked = _escapes_that_worked(ctx.sandbox, "agent")
    expect(not worked, f"the agent could: {', '.join(worked)}")


@check("isolation")
def root_in_a_grading_sandbox_cannot_either(ctx: Context) -> None:
    """Root in a grading sandbox (which keeps the capabilities to run code as the agent) can
    make no namespace, mount nothing, use no keyring, set no sysctl either."""
    worked = _escapes_that_worked(ctx.grading, "root")
    expect(not worked, f"root in a grading sandbox could: {', '.join(worked)}")


@check("isolation")
def the_agent_cannot_read_grader_files(ctx: Context) -> None:
    """Files root puts in /grader cannot be read or listed by the agent; root reads them."""
    box = ctx.sandbox
    uid = box.exec(["id", "-u"]).stdout.strip()
    expect(uid not in ("", "0"), f"not tried: the agent's commands run as uid {uid or '?'}, "
           "so nothing root writes is kept from them")  # fmt: skip
    box.exec(["sh", "-c", "mkdir -p -m 700 /grader && cat > /grader/secret.txt"],
             input=b"answer", user="root").check("writing /grader/secret.txt as root")  # fmt: skip
    expect(not box.exec(["cat", "/grader/secret.txt"]).ok, "the agent read /grader/secret.txt")
    expect(not box.exec(["ls", "/grader"]).ok, "the agent listed /grader")
    seen = box.exec(["cat", "/grader/secret.txt"], user="root").stdout
    expect(seen == "answer", f"root read {seen!r} from /grader/secret.txt, not 'answer'")


@check("isolation")
def host_files_are_out_of_reach(ctx: Context) -> None:
    """A file in the host's temporary folder cannot be read from inside."""
    with tempfile.TemporaryDirectory(prefix="rdbench-conformance-") as folder:
        secret = Path(folder) / f"host-secret-{uuid.uuid4().hex}"
        secret.write_text("host only")
        os.chmod(folder, 0o755)
        result = ctx.sandbox.exec(["cat", str(secret)], user="root")
    expect("host only" not in result.stdout, f"the sandbox read the host's {secret}")


def _probes(target: str) -> str:
    """A shell line printing `wrote` when `target` can be written (leaving it as it was)."""
    if target.startswith("/proc/sys/"):
        return f"(cat {target} > {target}) && echo wrote"
    if Path(target).name.startswith("rdbench-x"):
        return f"(: > {target}) && rm -f {target} && echo wrote"
    return f"(: >> {target}) && echo wrote"  # appends nothing


@check("isolation")
def the_agent_cannot_write_system_files(ctx: Context) -> None:
    """The agent cannot write system files (/etc, /usr, the image's Python); its home is
    writable."""
    tag = uuid.uuid4().hex[:8]
    targets = ["/etc/passwd", f"/etc/rdbench-x-{tag}", f"/usr/rdbench-x-{tag}",
               f"/opt/rdbench-venv/rdbench-x-{tag}", "/sys/rdbench-x"]  # fmt: skip
    wrote = [t for t in targets
             if "wrote" in ctx.sandbox.exec(["sh", "-c", _probes(t)]).stdout]  # fmt: skip
    expect(not wrote, f"the agent could write {', '.join(wrote)}")
    mine = ctx.sandbox.exec(["sh", "-c", "echo x > mine.txt && rm mine.txt"])
    expect(mine.ok, f"the agent cannot write its home: {said(mine)}")


@check("isolation")
def nobody_writes_the_system_not_even_root_in_a_grading_sandbox(ctx: Context) -> None:
    """The system is read-only for everyone, root in a grading sandbox included (/etc, /usr,
    /sys, /proc/sys)."""
    tag = uuid.uuid4().hex[:8]
    targets = [f"/etc/rdbench-x-{tag}", f"/usr/rdbench-x-{tag}", "/sys/rdbench-x",
               "/proc/sys/kernel/domainname"]  # fmt: skip
    wrote = []
    for user in ("agent", "root"):
        for target in targets:
            result = ctx.grading.exec(["sh", "-c", _probes(target)], user=user)
            if "wrote" in result.stdout:
                wrote.append(f"{user} wrote {target}")
            elif (
                user == "root"
                and not target.startswith("/sys/")
                and ("Read-only" not in result.stderr)
            ):
                wrote.append(
                    f"root was kept from {target} by something other than a "
                    f"read-only file system: {result.stderr.strip()[-120:]!r}"
                )
    expect(not wrote, "; ".join(wrote))


@check("isolation")
def sys_is_there_and_shows_the_cpus(ctx: Context) -> None:
    """/sys is mounted and shows the CPUs (programs that size thread pools read it)."""
    expect(ctx.sandbox.exec(["test", "-d", "/sys/devices/system/cpu/cpu0"]).ok,
           "/sys/devices/system/cpu/cpu0 is missing")  # fmt: skip


@check("isolation")
def dev_shm_holds_64_mb_and_dev_mqueue_is_there(ctx: Context) -> None:
    """/dev/shm is a 64 MB tmpfs and /dev/mqueue is mounted, as in a Docker container."""
    code = "import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)"
    size = int(python(ctx.sandbox, code))
    expect(size == 64 * 1024 * 1024, f"/dev/shm holds {size // 2**20} MB, not 64")
    kind = ctx.sandbox.exec(["stat", "-f", "-c", "%T", "/dev/mqueue"]).stdout.strip()
    expect(kind == "mqueue", f"/dev/mqueue is {kind or 'missing'!r}, not an mqueue file system")


@check("isolation")
def no_host_path_shows_in_pwd_or_pid_1(ctx: Context) -> None:
    """Neither PWD nor pid 1's command line shows a path or a pid of the host."""
    code = "import os; print(os.environ.get('PWD'))"  # docker sets none
    pwd = python(ctx.sandbox, code)
    expect(pwd in ("/home/agent", "None"), f"PWD is {pwd!r} in the agent's home")
    pwd = python(ctx.sandbox, code, cwd="/tmp")
    expect(pwd in ("/tmp", "None"), f"PWD is {pwd!r} in /tmp")
    cmdline = ctx.sandbox.exec(["cat", "/proc/1/cmdline"]).stdout.replace("\0", " ")
    expect(cmdline.strip(), "pid 1's command line cannot be read")
    host_details = ["/var/tmp", "rdbench-", ".cache", f" {os.getpid()}"]
    if os.getcwd() != "/":
        host_details.append(os.getcwd())
    shown = [detail for detail in host_details if detail in cmdline]
    expect(not shown, f"pid 1's command line {cmdline.strip()[:200]!r} shows {shown}")
