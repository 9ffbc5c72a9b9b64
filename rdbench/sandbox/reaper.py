"""The reaper: a small process that outlives rdbench and removes its sandboxes when it dies.

The first sandbox a process starts also starts one reaper (`watch()`), in its own session (so
Ctrl-C or a hang-up sent to rdbench's process group does not reach it), holding the reading
end of a pipe whose writing end only rdbench holds. However rdbench ends, even by SIGKILL, the
kernel closes that end and the reaper reads end-of-file. It then removes what that pid left:
its Docker containers (label `rdbench.pid`), the cgroups of its bwrap sandboxes, and its host
folders, disks and mounts (`/var/tmp/rdbench-<kind>-<pid>-*`), and exits. After a normal exit
there is nothing left to remove, and it exits at once.

Before that, it only waits on the pipe. rdbench writes one byte to it when it first uses a
backend, so that the reaper asks the Docker engine (and imports the docker SDK) only for a
process that started a Docker sandbox. It logs to `<cache>/rdbench/reaper.log`, never to a
terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BACKEND_BYTES = {"docker": b"d", "bwrap": b"b"}
SECOND_PASS_DELAY_S = 1.0  # a container being created as rdbench died shows up a little later
_lock = threading.Lock()
_state: tuple[int, int] | None = None  # (pid, writing end) of this process's reaper
_announced: set[str] = set()
_process: subprocess.Popen[bytes] | None = None  # kept, so it is not reported as abandoned
# The reaper runs this file as a module of its own, so that while it waits it holds only the
# standard library (about 12 MB; importing rdbench.sandbox would import every backend, and
# structlog alone adds 15 MB): everything else is imported once rdbench has ended.
PROGRAM = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('rdbench_reaper', sys.argv[1]); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "module.main(sys.argv[2:])"
)


def watch(backend: str) -> None:
    """Make sure a reaper watches this process, and tell it that `backend` is in use.

    Cheap after the first call. A reaper that cannot be started is logged, not raised: the
    sandbox still works, and `rdbench gc` removes what a killed run left."""
    global _state
    with _lock:
        if _state is None or _state[0] != os.getpid():  # none yet, or a forked child
            _announced.clear()
            try:
                _state = (os.getpid(), _start())
            except OSError as error:
                _log().warning("sandbox.reaper.not_started", error=str(error),
                               consequence="run `rdbench gc` after a killed run")  # fmt: skip
                return
        if backend not in _announced:
            _announced.add(backend)
            os.write(_state[1], BACKEND_BYTES.get(backend, b"?"))


def _start() -> int:
    """Start the reaper for this process; return the pipe's writing end (close-on-exec, so
    nothing rdbench starts holds it)."""
    global _process
    read_end, write_end = os.pipe()
    log_path = log_file()
    try:
        with open(log_path, "ab") as log_output:
            _process = subprocess.Popen(
                [sys.executable, "-c", PROGRAM, __file__, "--pid", str(os.getpid()),
                 "--fd", str(read_end)],
                stdin=subprocess.DEVNULL, stdout=log_output, stderr=log_output,
                pass_fds=[read_end], start_new_session=True, cwd="/", env=_env(),
            )  # fmt: skip
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    _log().debug("sandbox.reaper.started", log=str(log_path))
    return write_end


def _log() -> Any:
    """structlog's logger, imported only when there is something to log."""
    import structlog

    return structlog.get_logger()


def _env() -> dict[str, str]:
    """This environment, with the folder rdbench is imported from first on PYTHONPATH (the
    reaper runs in /, so as not to keep any folder busy)."""
    source = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}


def log_file() -> Path:
    """Where reapers log."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rdbench"
    root.mkdir(parents=True, exist_ok=True)
    return root / "reaper.log"


def wait_for_end(fd: int) -> set[str]:
    """Read the pipe until end-of-file; the backends rdbench said it used."""
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 64)
        except InterruptedError:
            continue
        if not chunk:
            break
        seen += chunk
    return {name for name, byte in BACKEND_BYTES.items() if byte in seen}


def reap(pid: int, backends: set[str]) -> list[str]:
    """Remove everything process `pid` left: containers, cgroups, host folders and disks."""
    removed: list[str] = []
    for attempt in range(2):
        if "docker" in backends:
            removed += _reap_containers(pid)
        if "bwrap" in backends:
            from rdbench.sandbox.cgroups import remove_leftover_groups

            removed += remove_leftover_groups(lambda name: name.split("-", 1)[0] == str(pid))
        from rdbench.sandbox import hostdirs

        removed += hostdirs.remove_dead(pid=pid)
        if attempt == 0 and "docker" in backends:
            time.sleep(SECOND_PASS_DELAY_S)
        else:
            break
    return removed


def _reap_containers(pid: int) -> list[str]:
    try:
        import docker

        client = docker.from_env()
        from rdbench.sandbox.docker import list_containers

        containers = list_containers(client, {"label": f"rdbench.pid={pid}"})
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        client.close()
    except Exception as error:  # no engine, or it failed: nothing more the reaper can do
        _log().warning("sandbox.reaper.docker_failed", pid=pid, error=str(error))
        return []
    return [str(container.short_id) for container in containers]


def main(argv: list[str] | None = None) -> None:
    """The reaper process: wait for the end of pid `--pid` (end-of-file on `--fd`), then
    remove what it left."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    backends = wait_for_end(args.fd)
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    started = time.monotonic()
    removed = reap(args.pid, backends)
    if removed:
        _log().info("sandbox.reaper.removed", pid=args.pid, removed=removed,
                 seconds=round(time.monotonic() - started, 2))  # fmt: skip


if __name__ == "__main__":
    main()
