"""The bwrap backend's seccomp filter: the system calls Docker's default profile refuses.

Every command in a bwrap sandbox (and the sandbox's init) runs under this filter. It refuses,
with EPERM, what a container has no business doing: making namespaces (unshare, and clone with
a namespace flag; clone3 answers ENOSYS so the C library falls back to clone, whose flags the
filter can read), keyrings, mounting (the old and the new mount API), pivot_root, swap, reboot,
kexec, kernel modules, bpf, perf_event_open, userfaultfd, open_by_handle_at, io_uring, process
accounting, setting the clocks, port I/O, quotas, the kernel log, unusual personalities and a
few obsolete calls. Everything else is allowed, setns and chroot included (nsenter needs them;
both also need capabilities a sandboxed command does not hold).

The program is classic BPF, written out here: it checks the architecture (x86_64 or aarch64,
each with its own numbers; any other, including 32-bit and x32 calls on x86_64, is refused),
then the call number, then for clone, unshare and personality their first argument.
"""

from __future__ import annotations

import ctypes
import errno
import struct

# BPF instruction classes and modes (linux/bpf_common.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x05 | 0x10  # BPF_JMP | BPF_JEQ | BPF_K
_JSET = 0x05 | 0x40  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
# Return values (linux/seccomp.h).
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_X32_BIT = 0x40000000
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# clone's namespace flags: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET; unshare
# also takes CLONE_NEWTIME (0x80, which for clone is part of the exit signal).
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000  # fmt: skip
UNSHARE_NAMESPACES = CLONE_NAMESPACES | 0x00000080
# personality() values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, both, and the query.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

DENIED = (
    "acct", "add_key", "request_key", "keyctl", "adjtimex", "clock_adjtime", "clock_settime",
    "settimeofday", "bpf", "init_module", "finit_module", "delete_module", "fanotify_init",
    "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "kcmp", "kexec_load", "kexec_file_load",
    "lookup_dcookie", "open_by_handle_at", "perf_event_open", "quotactl", "quotactl_fd",
    "reboot", "swapon", "swapoff", "syslog", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "vhangup", "sethostname", "setdomainname",
    "nfsservctl",
    # x86_64 only
    "iopl", "ioperm", "create_module", "get_kernel_syms", "query_module", "uselib", "ustat",
    "sysfs", "_sysctl",
)  # fmt: skip


class Arch:
    """One architecture: its audit number and its system call numbers."""

    def __init__(self, audit: int, numbers: dict[str, int], *, x32_bit: bool = False):
        self.audit = audit
        self.numbers = numbers
        self.x32_bit = x32_bit  # calls with this bit are the x32 ABI: refused


X86_64 = Arch(0xC000003E, {
    "acct": 163, "add_key": 248, "request_key": 249, "keyctl": 250, "adjtimex": 159,
    "clock_adjtime": 305, "clock_settime": 227, "settimeofday": 164, "bpf": 321,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "fanotify_init": 300,
    "mount": 165, "umount2": 166, "pivot_root": 155, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "kcmp": 312, "kexec_load": 246, "kexec_file_load": 320, "lookup_dcookie": 212,
    "open_by_handle_at": 304, "perf_event_open": 298, "quotactl": 179, "quotactl_fd": 443,
    "reboot": 169, "swapon": 167, "swapoff": 168, "syslog": 103, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "vhangup": 153,
    "sethostname": 170, "setdomainname": 171, "nfsservctl": 180, "iopl": 172, "ioperm": 173,
    "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "uselib": 134,
    "ustat": 136, "sysfs": 139, "_sysctl": 156,
    "clone": 56, "clone3": 435, "unshare": 272, "personality": 135,
}, x32_bit=True)  # fmt: skip
AARCH64 = Arch(0xC00000B7, {
    "acct": 89, "add_key": 217, "request_key": 218, "keyctl": 219, "adjtimex": 171,
    "clock_adjtime": 266, "clock_settime": 112, "settimeofday": 170, "bpf": 280,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "fanotify_init": 262,
    "mount": 40, "umount2": 39, "pivot_root": 41, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "kcmp": 272, "kexec_load": 104, "kexec_file_load": 294, "lookup_dcookie": 18,
    "open_by_handle_at": 265, "perf_event_open": 241, "quotactl": 60, "quotactl_fd": 443,
    "reboot": 142, "swapon": 224, "swapoff": 225, "syslog": 116, "userfaultfd": 282,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "vhangup": 58,
    "sethostname": 161, "setdomainname": 162, "nfsservctl": 42,
    "clone": 220, "clone3": 435, "unshare": 97, "personality": 92,
}, x32_bit=False)  # fmt: skip
ARCHES = (X86_64, AARCH64)


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def _arch_block(arch: Arch) -> list[tuple[int, int, int, int]]:
    """The instructions for one architecture, ending in its own returns. Conditional jumps
    are relative, so each test jumps to a labelled return: labels are resolved at the end."""
    ops: list[tuple[str, str, int]] = [("ld", "", _NR)]
    if arch.x32_bit:
        ops.append(("jset", "deny", _X32_BIT))
    for name in DENIED:
        if name in arch.numbers:
            ops.append(("jeq", "deny", arch.numbers[name]))
    ops += [
        ("jeq", "clone", arch.numbers["clone"]),
        ("jeq", "unshare", arch.numbers["unshare"]),
        ("jeq", "personality", arch.numbers["personality"]),
        ("jeq", "enosys", arch.numbers["clone3"]),
        ("ret", "", _ALLOW),
        ("label", "clone", 0), ("ld", "", _ARG0_LOW), ("jset", "deny", CLONE_NAMESPACES),
        ("ret", "", _ALLOW),
        ("label", "unshare", 0), ("ld", "", _ARG0_LOW), ("jset", "deny", UNSHARE_NAMESPACES),
        ("ret", "", _ALLOW),
        ("label", "personality", 0), ("ld", "", _ARG0_LOW),
        *(("jeq", "allow", value) for value in PERSONALITIES),
        ("label", "deny", 0), ("ret", "", _ERRNO | errno.EPERM),
        ("label", "allow", 0), ("ret", "", _ALLOW),
        ("label", "enosys", 0), ("ret", "", _ERRNO | errno.ENOSYS),
    ]  # fmt: skip
    return _assemble(ops)


def _assemble(ops: list[tuple[str, str, int]]) -> list[tuple[int, int, int, int]]:
    """Turn ("ld"|"jeq"|"jset"|"ret"|"label", label, k) into instructions."""
    where: dict[str, int] = {}
    count = 0
    for kind, label, _ in ops:
        if kind == "label":
            where[label] = count
        else:
            count += 1
    program: list[tuple[int, int, int, int]] = []
    for kind, label, k in ops:
        if kind == "ld":
            program.append(_op(_LD_W_ABS, k))
        elif kind == "ret":
            program.append(_op(_RET, k))
        elif kind in ("jeq", "jset"):
            offset = where[label] - len(program) - 1
            if not 0 <= offset <= 255:
                raise ValueError(f"seccomp jump to {label} out of range ({offset})")
            program.append(_op(_JEQ if kind == "jeq" else _JSET, k, jt=offset))
    return program


def program() -> bytes:
    """The filter as an array of `struct sock_filter` (what bwrap's --seccomp reads)."""
    blocks = [_arch_block(arch) for arch in ARCHES]
    # ld arch; one jeq per architecture to its block; anything else is refused.
    head: list[tuple[int, int, int, int]] = [_op(_LD_W_ABS, _ARCH)]
    start = len(ARCHES) + 1  # past the jeqs and the refusal, relative to the first jeq's end
    for index, arch in enumerate(ARCHES):
        skip = sum(len(block) for block in blocks[:index])
        head.append(_op(_JEQ, arch.audit, jt=start - index - 1 + skip))
    head.append(_op(_RET, _ERRNO | errno.EPERM))
    instructions = head + [op for block in blocks for op in block]
    return b"".join(struct.pack("=HBBI", *op) for op in instructions)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Put the calling thread (and everything it starts from now on) under the filter.
    no_new_privs must already be set on the thread. OSError when the kernel refuses."""
    code = program()
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
