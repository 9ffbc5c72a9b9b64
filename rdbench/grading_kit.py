"""Helpers for a task's grader, copied into the grading sandbox as `rdbench_grading.py`.

A task's `grader/score.py` runs as root inside a fresh grading sandbox, with the agent's
final workspace at `/home/agent` and the grader's own files in a root-only directory, run as
`python3 score.py`: its folder is first on sys.path, so it imports this module (standard
library only; it must run on the image's Python) and its own modules directly. The kit runs the
agent's code as the unprivileged user, reads what the agent wrote safely, and prints the
verdict in the grading contract:

```python
from rdbench_grading import emit, grade_main, read_agent_file, run_as_agent, shown

def grade(split: str, workspace: str, scratch: str) -> None:   # split: "validation" or "test"
    out = os.path.join(make_agent_dir(os.path.join(scratch, "out")), "predictions.csv")
    run = run_as_agent(["python", "train.py", "--out", out], cwd=workspace, timeout=600)
    if not run.ok:
        emit(None, valid=False, message=f"train.py failed: {run.tail()}")
    data = read_agent_file(out, limit=10_000_000)   # no link, no FIFO, capped
    ...
    emit(raw_score, valid=True, message=f"score {shown(raw_score)}", details={...})

if __name__ == "__main__":
    grade_main(grade, scratch="my-task-grade")   # args, scratch folder, ArtifactError -> invalid
```

What the kit handles: a file of the agent's is read without following a symlink (anywhere
below the workspace, read_workspace_file), never a FIFO or a device, at most a given size, and
any failure is an invalid verdict saying why (ArtifactError, caught by grade_main); the scratch
folder is root's, mode 0711 (the agent user reaches only the folders made for it inside);
every run of the agent's code is in a new session, and its process group and every process of
the agent user are killed when it ends (run_as_agent, agent_process_args + kill_group for a
grader that drives the process itself); a grader that runs the agent's code more than once
(timed repeats, several seeds) gives every run its own fresh copy of the submitted workspace
with FreshWorkspaces; timing tasks pin runs to the cores in turn (pinned_core), alternate
which program goes first (alternated) and take the fastest of n (fastest) or the median of
paired ratios (median_ratio). Every number in a message goes through `shown` (the `score` tool
shows the message to the agent).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import pwd
import resource
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

AGENT_USER = "agent"
SPLITS = ("validation", "test")
OUTPUT_LIMIT = 1_000_000  # bytes kept of the end of each output stream
SHOWN_DIGITS = 3  # significant digits of a number the agent may see (a score, a loss)


@dataclass
class AgentRun:
    """What one run of the agent's code did, timed from outside its process."""

    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the code exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    def tail(self, chars: int = 800) -> str:
        """The end of stderr (or stdout), for a message the agent can act on."""
        if self.timed_out:
            return f"timed out after {self.elapsed_s:.0f}s"
        text = (self.stderr.strip() or self.stdout.strip())[-chars:]
        return f"exit code {self.returncode}: {text}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the arguments every grader receives: --workspace, and the split.

    rdbench gives the split on stdin, not on the command line, which every process in the
    sandbox can read (the agent's code could tell a validation grading from the test grading).
    By hand, pass --split; with neither, the split is "test"."""
    parser = argparse.ArgumentParser(description="Grade an agent's workspace.")
    parser.add_argument("--split", choices=SPLITS, default=None)
    parser.add_argument("--workspace", default=f"/home/{AGENT_USER}")
    args = parser.parse_args(argv)
    if args.split is None:
        args.split = _split_from_stdin(parser)
    return args


def grade_main(grade: Callable[..., object], *, scratch: str | None = None) -> NoReturn:
    """The whole `main()` of a grader: parse the arguments (parse_args), and call
    `grade(split, workspace)`, or `grade(split, workspace, scratch)` with a new scratch folder
    (scratch_folder) when `scratch` gives its name's prefix; the folder is removed afterwards.
    `grade` emits the verdict; an ArtifactError it lets through (a file of the agent's that
    cannot be read, a run that left no artifact) becomes the invalid verdict saying why.
    A grade that returns without emitting is a bug of the grader: it exits 1."""
    args = parse_args()
    workspace = os.path.abspath(args.workspace)
    try:
        if scratch is None:
            grade(args.split, workspace)
        else:
            with scratch_folder(scratch) as folder:
                grade(args.split, workspace, folder)
    except ArtifactError as error:
        emit(None, valid=False, message=str(error), details={"split": args.split})
    sys.stderr.write("the grader returned without a verdict (call emit)\n")
    sys.exit(1)


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[str]:
    """A new folder for one grading's files, removed (whatever is in it) when the block ends.

    It is root's, mode 0711: the agent user may enter it, reach what it is told the path of,
    and write in the folders made for it inside (make_agent_dir), but not list it, nor rename
    or delete anything in it, so nothing of the grader's beside its own folders is in its
    sight."""
    folder = tempfile.mkdtemp(prefix=f"{prefix}-")
    os.chmod(folder, 0o711)
    try:
        yield folder
    finally:
        remove_tree(folder)


def shown(value: float, digits: int = SHOWN_DIGITS) -> str:
    """`value` rounded to `digits` significant digits, written out for a message the agent sees.

    Every number in a grader's message goes through this: a score shown at full precision
    is an oracle (an AUC to 16 digits tells one hidden label per call). Trailing zeros are
    kept, so "0.500" says how precise it is; very large or small values use an exponent."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0." + "0" * (digits - 1) if digits > 1 else "0"
    text = f"{value:.{digits - 1}e}"  # rounds once, to the digits shown
    exponent = int(text.split("e")[1])
    if not -5 <= exponent < 6:
        return text
    return f"{float(text):.{max(digits - 1 - exponent, 0)}f}"


def _split_from_stdin(parser: argparse.ArgumentParser) -> str:
    """The split rdbench wrote on stdin ("test" when stdin is a terminal or empty)."""
    if sys.stdin is None or sys.stdin.isatty():
        return "test"
    given = sys.stdin.read(64).strip()
    if given and given not in SPLITS:
        parser.error(f"stdin must hold the split, one of {', '.join(SPLITS)}; got {given!r}")
    return given or "test"


def _agent_identity() -> pwd.struct_passwd:
    return pwd.getpwnam(AGENT_USER)


def make_agent_dir(path: str) -> str:
    """Create `path` (if needed) owned by the agent user, so its code may write there."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() == 0:
        agent = _agent_identity()
        os.chown(path, agent.pw_uid, agent.pw_gid)
    return path


def agent_process_args(
    home: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The Popen arguments that run a process as the agent user (`user`, `group`,
    `extra_groups`; none when the grader is not root) and a clean environment for it, `env`
    added. Give the Popen `start_new_session=True` too and kill its group afterwards
    (kill_group, kill_agent_processes), or use run_as_agent, which does all of it. `home` is
    HOME when the grader is not root (a developer running it by hand)."""
    run_env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    identity: dict[str, Any] = {}
    if os.geteuid() == 0:
        agent = _agent_identity()
        identity = {"user": agent.pw_uid, "group": agent.pw_gid, "extra_groups": []}
        run_env.update(HOME=agent.pw_dir, USER=AGENT_USER)
    else:
        run_env["HOME"] = os.environ.get("HOME", home)
    run_env.update(env or {})
    return identity, run_env


def run_as_agent(
    cmd: list[str],
    *,
    cwd: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> AgentRun:
    """Run `cmd` as the unprivileged agent user, in its own session, with a wall-clock timeout.

    When the grader is not root (a developer running it by hand), the command runs as the
    current user. Afterwards (on timeout too) every process of the agent user is killed.
    """
    identity, run_env = agent_process_args(cwd, env)
    # Output goes to files, not pipes: a process the command leaves behind holding a pipe
    # open must not keep the grader waiting.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=run_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            **identity,
        )
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait()
            timed_out = True
        elapsed = time.perf_counter() - start
        kill_group(proc.pid)  # nothing the command started may outlive it,
        kill_agent_processes()  # not even what left its process group (setsid, daemons)
        return AgentRun(
            returncode=proc.returncode,
            stdout=tail_of(out),
            stderr=tail_of(err),
            elapsed_s=elapsed,
            timed_out=timed_out,
        )


def tail_of(file: IO[bytes], limit: int = OUTPUT_LIMIT) -> str:
    """The last `limit` bytes of the binary `file` (an output a run wrote), as text."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - limit))
    return file.read().decode("utf-8", "replace")


def kill_agent_processes() -> int:
    """Kill every process of the agent user (when run as root); return how many were killed.

    The grading sandbox runs nothing of the agent's between the grader's own runs, so a
    process the agent's code left behind (to interfere with grading) has no business living.
    """
    if os.geteuid() != 0:
        return 0
    uid = _agent_identity().pw_uid
    killed = 0
    for _ in range(5):  # a forking process may spawn between the scan and the kill
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _owner(int(p)) == uid]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    return killed


SCRATCH_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
"""Where the agent user may write in a grading sandbox, besides its home."""


def walk_tree(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """Like os.walk(top) top-down, but without recursion, so a tree thousands of folders deep
    (which an agent may leave) is walked like any other; take names out of the yielded folder
    list to skip those folders. Links are never followed."""
    pending = [top]
    while pending:
        parent = pending.pop()
        try:
            with os.scandir(parent) as scan:
                entries = list(scan)
        except OSError:
            continue
        dirs = [entry.name for entry in entries if entry.is_dir(follow_symlinks=False)]
        files = [entry.name for entry in entries if not entry.is_dir(follow_symlinks=False)]
        yield parent, dirs, files
        pending.extend(os.path.join(parent, name) for name in reversed(dirs))


def remove_tree(path: str) -> None:
    """Delete `path` and all it holds, however deep (GNU rm: no recursion in Python, which a
    deep tree would exhaust), never leaving its filesystem."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", path], capture_output=True,
                   check=False)  # fmt: skip


def clear_agent_scratch() -> None:
    """Delete what the agent user owns in the scratch places (SCRATCH_ROOTS) and the System V
    IPC objects (when run as root). Kill the agent's processes first."""
    if os.geteuid() != 0:
        return
    if shutil.which("ipcrm"):
        subprocess.run(["ipcrm", "--all"], capture_output=True, check=False)
    uid = _agent_identity().pw_uid
    for root in SCRATCH_ROOTS:
        for parent, dirs, files in walk_tree(root):
            for name in [*dirs, *files]:
                path = os.path.join(parent, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if info.st_uid == uid:
                    _remove(path, stat.S_ISDIR(info.st_mode))
                    if name in dirs:
                        dirs.remove(name)


class FreshWorkspaces:
    """A new copy of the submitted workspace for every run of the agent's code.

    Create it before any of the agent's code runs: it copies `workspace` to a root-only
    pristine snapshot under `scratch` (a root-owned folder the agent user may enter but not
    list) and closes `workspace` itself to the agent user. Each `fresh()` copies the snapshot
    to a new folder under `scratch`, owned by the agent user, for one run; afterwards it kills
    the agent user's processes, removes that folder and clears the scratch places
    (clear_agent_scratch). A copy holds the files' contents, permission bits and symlinks and
    nothing else (no times, extended attributes, owners, special files or traces of deleted
    files), so nothing one run leaves in the workspace can reach the next: deleting only what
    changed cannot promise that (a directory's time or extended attribute carries data too).
    """

    def __init__(self, workspace: str, scratch: str) -> None:
        self.workspace = workspace
        self.scratch = scratch
        self.runs = 0
        self.pristine = os.path.join(scratch, "pristine")
        os.mkdir(self.pristine, 0o700)
        root = os.geteuid() == 0
        _copy_or_invalid(workspace, os.path.join(self.pristine, "workspace"), 0 if root else None)
        if root:  # the agent's code reaches its files only through the copies
            os.chown(workspace, 0, 0)
            os.chmod(workspace, 0o700)

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        """A new folder holding a copy of the submitted workspace, owned by the agent user;
        removed, with everything else of the agent user's, when the block ends."""
        self.runs += 1
        folder = os.path.join(self.scratch, f"workspace-{self.runs}")
        owner = _agent_identity().pw_uid if os.geteuid() == 0 else None
        try:
            _copy_or_invalid(os.path.join(self.pristine, "workspace"), folder, owner)
            yield folder
        finally:
            kill_agent_processes()
            _remove_folder(folder)
            clear_agent_scratch()


def _copy_or_invalid(source: str, target: str, owner: int | None) -> None:
    """_copy_plain, or the verdict that the workspace cannot be copied (too deep a tree, a
    path too long): the submission's fault, not an error of the grader."""
    try:
        _copy_plain(source, target, owner)
    except OSError as error:
        where = os.path.relpath(error.filename, source) if error.filename else "?"
        emit(None, valid=False, message=f"the workspace could not be copied for grading: "
             f"{error.strerror} ({where[:200]})")


def _copy_plain(source: str, target: str, owner: int | None) -> None:
    """Copy the folder `source` to the new folder `target`: contents, permission bits (no
    set-id bits) and symlinks only, every entry owned by `owner` (unchanged when None).
    Symlinks are copied as links, never followed; other special files are left out. Walks
    with its own stack, so no depth of folders exhausts Python's recursion limit."""
    pending = [(source, target)]
    folders = []  # (source, copy) of every folder, given its owner and mode once filled
    while pending:
        folder, made = pending.pop()
        os.mkdir(made, 0o700)
        folders.append((folder, made))
        with os.scandir(folder) as entries:
            for entry in entries:
                path, copy = entry.path, os.path.join(made, entry.name)
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    os.symlink(os.readlink(path), copy)
                elif stat.S_ISDIR(info.st_mode):
                    pending.append((path, copy))
                    continue
                elif stat.S_ISREG(info.st_mode):
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    with os.fdopen(fd, "rb") as src, open(copy, "xb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.chmod(copy, stat.S_IMODE(info.st_mode) & 0o777)
                else:
                    continue
                if owner is not None:
                    os.lchown(copy, owner, _agent_group(owner))
    for folder, made in reversed(folders):
        if owner is not None:
            os.chown(made, owner, _agent_group(owner))
        os.chmod(made, stat.S_IMODE(os.lstat(folder).st_mode) & 0o777 | 0o700)


def _remove_folder(folder: str) -> None:
    """Remove `folder` and everything in it, with its own stack (any depth). What cannot be
    removed (a path too long) is closed off: `folder` is given to root, mode 0700, so no later
    run of the agent's code can reach it."""
    pending, folders = [folder], []
    while pending:
        current = pending.pop()
        folders.append(current)
        with contextlib.suppress(OSError), os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
    for current in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(current)
    if os.path.lexists(folder) and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.lchown(folder, 0, 0)
            os.chmod(folder, 0o700)


def _agent_group(owner: int) -> int:
    return 0 if owner == 0 else _agent_identity().pw_gid


def _remove(path: str, is_dir: bool) -> None:
    if is_dir:
        remove_tree(path)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the process group `pgid` (a run started in a new session);
    nothing when it is gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def emit(
    raw_score: float | None,
    *,
    valid: bool,
    message: str,
    details: dict[str, Any] | None = None,
) -> NoReturn:
    """Print the grading verdict as the last line of stdout and exit 0.

    `message` may be shown to the agent; `details` never is.
    """
    verdict = {
        "raw_score": None if raw_score is None else float(raw_score),
        "valid": bool(valid) and raw_score is not None,
        "message": message,
        "details": details or {},
    }
    sys.stdout.write("\n" + json.dumps(verdict) + "\n")
    sys.stdout.flush()
    sys.exit(0)


# ---- agent code makes an artifact; the grader checks and runs it -----------------------------


class ArtifactError(Exception):
    """The agent's run left no usable artifact; the message says why (the agent may see it).
    `run` is the run that failed (None when the file, not the run, was at fault)."""

    def __init__(self, message: str, run: AgentRun | None = None) -> None:
        super().__init__(message)
        self.run = run


def read_agent_file(path: str, limit: int, *, missing: str | None = None) -> bytes:
    """The bytes of a file the agent's code wrote, read once: never through a symlink (its
    last part), only a regular file (never a FIFO or a device: the open does not block), at
    most `limit` bytes. Raises ArtifactError saying what is wrong (the agent may see it):
    `missing` when there is no file ("NAME was not written" unless given). A grader run by
    grade_main turns that error into an invalid verdict."""
    name = os.path.basename(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise _unreadable(error, name, missing) from None
    return _read_regular(fd, name, limit)


def read_workspace_file(workspace: str, relative: str, limit: int) -> bytes:
    """The bytes of the file `relative` (a path inside `workspace`, "/"-separated), read as
    read_agent_file reads, with no symlink followed anywhere below `workspace` (each folder
    on the way is opened without following links). Raises ArtifactError: "there is no
    RELATIVE in the workspace" when it is missing, or what else is wrong."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or relative.startswith("/"):
        raise ArtifactError(f"{relative} is not a path inside the workspace")
    missing = f"there is no {relative} in the workspace"
    folder = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                dir_fd=folder)  # fmt: skip
            except OSError as error:
                raise _unreadable(error, relative, missing) from None
            os.close(folder)
            folder = below
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError as error:
            raise _unreadable(error, relative, missing) from None
    finally:
        os.close(folder)
    return _read_regular(fd, relative, limit)


def _unreadable(error: OSError, name: str, missing: str | None) -> ArtifactError:
    """The ArtifactError for a failed open of the agent's file `name`."""
    if error.errno == errno.ENOENT:
        return ArtifactError(missing or f"{name} was not written")
    if error.errno == errno.ELOOP:
        return ArtifactError(f"{name} could not be opened: it is a symlink; write a regular file")
    if error.errno == errno.ENOTDIR:
        return ArtifactError(
            f"{name} could not be opened: a folder on its path is a symlink or not a folder"
        )
    return ArtifactError(f"{name} could not be opened ({error.strerror})")


def _read_regular(fd: int, name: str, limit: int) -> bytes:
    """At most `limit` bytes of the open file `fd` (closed after), which must be a regular
    file; ArtifactError otherwise."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a folder
        os.close(fd)
        raise ArtifactError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ArtifactError(f"{name} is larger than {limit} bytes")
    return data


def run_for_artifact(
    cmd: list[str],
    *,
    cwd: str,
    output: str,
    timeout: float,
    limit: int,
    env: dict[str, str] | None = None,
) -> tuple[AgentRun, bytes]:
    """Run `cmd` (a trusted harness that loads the agent's code) as the agent user to write
    one file, `output`; return the run and that file's bytes.

    This is the defence for any check of what the agent's code does: a check inside a process
    the agent's code shares can be switched off by that code, so the agent's code only
    produces an artifact (an exported graph, predictions, a file of weights) in its own
    process, and the grader checks and runs that artifact in its own process, never importing
    the agent's code. The folder of `output` is made afresh, owned by the agent user; the file
    is read only after every process of the agent user is dead (nothing can change it while it
    is read), with read_agent_file; then the folder is removed and the scratch places cleared
    (clear_agent_scratch), so nothing of the run reaches the grader's later work. Raises
    ArtifactError (with the end of the run's output) when the run failed or left no usable
    file.
    """
    folder = os.path.dirname(output)
    if os.path.lexists(folder):
        raise ArtifactError(f"{folder} exists already; give run_for_artifact a new folder")
    make_agent_dir(folder)
    try:
        run = run_as_agent(cmd, cwd=cwd, timeout=timeout, env=env)
        kill_agent_processes()
        if not run.ok:
            raise ArtifactError(run.tail(), run)
        return run, read_agent_file(output, limit)
    finally:
        remove_tree(folder)
        clear_agent_scratch()


class CpuCounter:
    """CPU seconds used so far by every process in the cgroup of the grading sandbox.

    A grading sandbox is one cgroup, shown read-only inside: a Docker container's group, or
    the bwrap sandbox's cpuacct group, whose commands each run in a group below it. The
    grader and every process the agent's code starts are in it, and none can leave it. Its
    counter (cgroup v2 `cpu.stat` usage_usec, or v1 `cpuacct.usage`) counts the CPU time of
    every thread and process of the sandbox, however it ended: a thread, a child nobody waited
    for (SIGCHLD ignored), an orphan, a daemon. Time a run of the agent's code by the
    counter's rise minus the grader's own CPU time meanwhile (grader_cpu_s): work moved to
    another thread or process is counted, and waiting on something that works elsewhere is
    impossible, since there is nothing else in the sandbox to work. Outside a sandbox (a
    grader run by hand) it is the counter of this process's own group, where one is mounted.
    `find()` is None where no counter is visible.
    """

    def __init__(self, path: str, scale: float, key: str | None) -> None:
        self.path = path
        self.scale = scale  # seconds per unit
        self.key = key  # the line of a flat-keyed file (cpu.stat), None for a single number

    @classmethod
    def find(cls) -> CpuCounter | None:
        """The counter of the sandbox's cgroup (see `_below`) that holds this process, or
        None when none is readable."""
        try:
            with open("/proc/self/cgroup", encoding="utf-8") as handle:
                groups = [line.rstrip("\n").split(":", 2) for line in handle]
            with open("/proc/self/mountinfo", encoding="utf-8") as handle:
                mounts = [line.split() for line in handle]
        except OSError:
            return None
        for fields in mounts:
            if "-" not in fields:
                continue
            dash = fields.index("-")
            fstype, options = fields[dash + 1], fields[dash + 3].split(",")
            root, point = fields[3], fields[4]
            for hierarchy, controllers, path in groups:
                names = controllers.split(",")
                if fstype == "cgroup2" and hierarchy == "0" and controllers == "":
                    name, scale, key = "cpu.stat", 1e-6, "usage_usec"
                elif fstype == "cgroup" and "cpuacct" in options and "cpuacct" in names:
                    name, scale, key = "cpuacct.usage", 1e-9, None
                else:
                    continue
                file = _below(point, root, path, name)
                if file is None:
                    continue
                counter = cls(file, scale, key)
                with contextlib.suppress(OSError, ValueError):
                    counter.seconds()
                    return counter
        return None

    def seconds(self) -> float:
        """The CPU seconds the cgroup's processes have used so far (microsecond precision or
        better)."""
        with open(self.path, encoding="ascii") as handle:
            text = handle.read()
        if self.key is None:
            return int(text) * self.scale
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == self.key:
                return int(value) * self.scale
        raise ValueError(f"{self.path} has no {self.key} line")


def _below(mount_point: str, mount_root: str, group: str, name: str) -> str | None:
    """The file `name` of the sandbox's group that holds cgroup `group`, in a cgroupfs mounted
    at `mount_point` from `mount_root`; None when that group is not in the mount.

    Paths are as this process's cgroup namespace shows them (/proc/self/cgroup, mountinfo),
    relative to its root, and may start with "/.." (a group beside that root). A sandbox
    mounts its own group: where the mount's root is a group of its own (Docker's
    `/docker/<id>`; the bwrap sandbox's, shown as "/.." beside the `init` group its cgroup
    namespace was made in, with each command in a group below it) that group is the sandbox,
    whatever group below it this process is in. Where the mount's root is the namespace's
    root ("/": a container in its own cgroup namespace, or a host) it is `group` itself."""
    if mount_root != "/":
        return os.path.join(mount_point, name)
    parts = [part for part in group.split("/") if part not in ("", ".")]
    if ".." in parts:  # outside the namespace's root, so outside the mount
        return None
    return os.path.join(mount_point, *parts, name)


def threads_cpu_s(pid: int) -> float:
    """CPU seconds the threads of process `pid` have used so far (nanosecond precision, from
    /proc/<pid>/task/*/schedstat; threads that end meanwhile are missed, so pause it first)."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError), open(
                f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii"
            ) as handle:
                total += int(handle.read().split()[0])
    return total * 1e-9


def grader_cpu_s() -> float:
    """CPU seconds this process (the grader, all its threads) has used so far: subtract its
    rise from a CpuCounter's while timing the agent's code."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- timing: runs of two programs compared on a machine that does other work ------------


def pinned_core(turn: int, cores: Sequence[int] | None = None) -> int:
    """The core for the `turn`-th run (from 0): the allowed cores (os.sched_getaffinity) in
    turn, so both programs compared start on each core as often (the cores of a virtual
    machine can differ in speed)."""
    allowed = sorted(cores if cores is not None else os.sched_getaffinity(0))
    return allowed[turn % len(allowed)]


def alternated(repeat: int, first: Any, second: Any) -> tuple[Any, Any]:
    """(first, second) on even repeats, (second, first) on odd ones: which of two compared
    runs goes first alternates, so neither always meets a machine warmed (or disturbed) by
    the other. Give the grader's own program as `first`: its first run then precedes any of
    the agent's code."""
    return (first, second) if repeat % 2 == 0 else (second, first)


def fastest(times: Sequence[float], floor: float = 0.0) -> float:
    """The fastest of repeated timings, at least `floor`: load on the machine only ever slows
    work down, so the fastest run is the least disturbed."""
    if not times:
        raise ValueError("fastest() needs at least one timing")
    return max(min(times), floor)


def median_ratio(slow: Sequence[float], fast: Sequence[float], floor: float = 0.0) -> float:
    """The median over repeats of slow[i] / fast[i] (fast[i] at least `floor`): the speed-up of
    paired runs (the same input, one right after the other), which a repeat disturbed by the
    rest of the machine moves by one ratio, not the median."""
    ratios = [s / max(f, floor) for s, f in zip(slow, fast, strict=True)]
    if not ratios:
        raise ValueError("median_ratio() needs at least one pair of timings")
    return statistics.median(ratios)
