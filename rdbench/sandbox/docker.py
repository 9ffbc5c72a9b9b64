"""The Docker backend: one container per sandbox, driven through the docker SDK.

Each container has no network, CPU, memory, process and file size limits, an init process,
all capabilities dropped and no-new-privileges, a read-only root filesystem with the agent's
home, /tmp, /var/tmp and the root-only /grader on a size-limited disk (disk.py),
and labels naming its run and episode so that its reaper (reaper.py) or `rdbench gc` can
find leftovers. Commands run through `docker exec`; a command that passes its timeout is killed
inside the container (every process carrying its exec marker), not merely abandoned.
Files move as tar archives.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import docker
import docker.errors
import structlog
from docker.models.containers import Container
from docker.types import Ulimit

from rdbench.sandbox import hostdirs, reaper
from rdbench.sandbox.archive import (
    EXPORT_SCRIPT,
    GET_DIR_LIMIT,
    IMPORT_SCRIPT,
    MIB,
    STREAM_TIMEOUT_S,
    ArchiveSink,
    check_usage,
    dir_in_memory,
    export_outcome,
    file_as_tar_member,
    first_file,
    folder_tar,
    single_file_tar,
    too_large,
    unpack_outcome,
)
from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_USER,
    BASE_ENV,
    CHANNEL_DIR,
    FILE_SIZE_LIMIT,
    GRADER_DIR,
    GRADING_CAPS,
    ArchiveError,
    ExecResult,
    Exported,
    SandboxConfig,
    SandboxError,
    SandboxFileNotFound,
    SandboxOutputLimit,
    SandboxUnavailable,
    disk_full_note,
    out_of_memory_note,
    owner_of,
    require_command,
    sandbox_path,
    user_env,
)
from rdbench.sandbox.disk import SandboxDisk
from rdbench.sandbox.terminal import SocketTerminal

log = structlog.get_logger()

LABEL = "rdbench"
EXEC_MARKER = "RDBENCH_EXEC"
KILL_GRACE_S = 10.0
# The runtime's words when it could not start an exec's process (the pid limit was full):
# such an exec never ran, so it is tried again for a few seconds.
START_FAILED = b"OCI runtime exec failed"
EXEC_START_RETRY_S = 5.0
EXEC_START_PAUSE_S = 0.2
# The sandbox's disk's folders, by their name on the disk and their path inside.
DISK_FOLDERS = {"home": AGENT_HOME, "tmp": "/tmp", "var-tmp": "/var/tmp", "grader": GRADER_DIR}
WRITABLE_HINT = "the Docker sandbox is read-only outside /home/agent, /tmp, /var/tmp and /grader"
STDERR_KEPT = 64 * 1024


def connect() -> docker.DockerClient:
    """A client for the local Docker engine, or SandboxUnavailable saying how to get one."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        raise SandboxUnavailable(
            f"No Docker engine answered ({error}). Start one (dockerd, or `make setup`), "
            "or run with another --sandbox backend."
        ) from error
    return client


def docker_available() -> bool:
    """True when a Docker engine answers."""
    try:
        connect().close()
    except SandboxUnavailable:
        return False
    return True


class DockerSandbox:
    """A sandbox in one Docker container, started on construction."""

    backend = "docker"  # the registered name, recorded with results

    def __init__(self, config: SandboxConfig, *, client: docker.DockerClient | None = None):
        self.config = config
        self._client = client or connect()
        self._closed = False
        self._oom_kills = 0  # the container's out-of-memory kills seen so far
        self._pid_ns: str | None = None  # its pid namespace seen from the host (_pid_namespace)
        image = config.image or _default_image(self._client)
        labels = {LABEL: "1", f"{LABEL}.pid": str(os.getpid()), **config.labels}
        reaper.watch("docker")
        self.disk = _make_disk(config)
        try:
            self._container: Container = self._client.containers.run(
                image,
                command=["sleep", "infinity"],
                detach=True,
                init=True,
                network_mode="none",
                dns=["127.0.0.1"],  # /etc/resolv.conf would show the host's name server
                cap_drop=["ALL"],
                cap_add=GRADING_CAPS if config.grading else None,
                security_opt=["no-new-privileges"],
                mem_limit=f"{config.memory_mb}m",
                memswap_limit=f"{config.memory_mb}m",
                nano_cpus=int(config.cpus * 1e9),
                pids_limit=config.pids,
                ulimits=[Ulimit(name="fsize", soft=FILE_SIZE_LIMIT, hard=FILE_SIZE_LIMIT)],
                labels=labels,
                hostname="sandbox",
                working_dir=AGENT_HOME,
                environment=BASE_ENV,
                # With a disk, only its folders are writable: the rest is read-only.
                read_only=self.disk is not None,
                volumes={**_disk_volumes(self.disk), **_channel_volume(config)},
            )
        except docker.errors.ImageNotFound as error:
            self._remove_disk()
            raise SandboxUnavailable(
                f"Sandbox image {image!r} is missing; build it with `rdbench image build`"
            ) from error
        except docker.errors.APIError as error:
            self._remove_disk()
            raise SandboxUnavailable(f"Docker could not start a sandbox: {error}") from error
        except BaseException:
            self._remove_disk()
            raise
        self.id: str = self._container.id or ""
        log.info("sandbox.start", backend="docker", container=self.id[:12], image=image)

    @property
    def container(self) -> Container:
        """The container behind this sandbox."""
        return self._container

    def exec(
        self,
        cmd: list[str],
        *,
        input: bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run `cmd` inside; on timeout kill it and everything it started."""
        require_command(cmd, cwd=cwd, env=env)
        user = user or AGENT_USER
        marker = uuid.uuid4().hex
        if input is not None:
            stdin_path = f"/tmp/.rdbench-stdin-{marker}"
            self._put(posixpath.dirname(stdin_path), single_file_tar(
                posixpath.basename(stdin_path), input, owner=owner_of(user), mode=0o600))
            cmd = ["sh", "-c", 'exec 0<"$0"; rm -f "$0"; exec "$@"', stdin_path, *cmd]
        environment = {**user_env(user), **(env or {}), EXEC_MARKER: marker}
        api = self._client.api
        retry_until = time.monotonic() + EXEC_START_RETRY_S
        while True:
            exec_id = self._start_exec(cmd, user, cwd, environment, retry_until)
            try:
                stream = api.exec_start(exec_id, stream=True, demux=True)
            except docker.errors.APIError as error:
                raise self._unavailable(error) from error
            reader = _OutputReader(stream, self.config.output_limit)
            reader.start()
            limit = timeout if timeout is not None else self.config.exec_timeout_s
            reader.join(limit)
            timed_out = reader.is_alive()
            if timed_out:
                self._kill_marked(marker, user)
                reader.join(KILL_GRACE_S)
                log.warning("sandbox.exec_timeout", cmd=cmd[:3], timeout=limit)
            returncode = api.exec_inspect(exec_id).get("ExitCode")
            never_started = returncode == 126 and START_FAILED in bytes(reader.stdout)
            if timed_out or not never_started or time.monotonic() > retry_until:
                break
            log.info("sandbox.exec_retry", cmd=cmd[:3], reason="the runtime could not start it")
            time.sleep(EXEC_START_PAUSE_S)
        stderr = bytes(reader.stderr).decode("utf-8", "replace")
        if returncode == 137 and not timed_out and self._new_oom_kills():
            stderr += out_of_memory_note(self.config.memory_mb)
        if self.disk is not None and self.disk.full():
            stderr += disk_full_note(self.config.disk_mb)
        return ExecResult(
            returncode=-9 if returncode is None else int(returncode),
            stdout=bytes(reader.stdout).decode("utf-8", "replace"),
            stderr=stderr,
            timed_out=timed_out,
            truncated=reader.truncated,
        )

    def _start_exec(
        self, cmd: list[str], user: str, cwd: str | None, environment: dict[str, str],
        retry_until: float,
    ) -> str:
        """Create the exec of `cmd`; return its id. While the runtime cannot start a process
        in the container (its pid limit still full, just after a fork bomb was killed), try
        again until `retry_until`."""
        while True:
            try:
                return str(self._client.api.exec_create(
                    self.id, cmd, user=user, workdir=cwd or AGENT_HOME, environment=environment
                )["Id"])
            except docker.errors.APIError as error:
                if START_FAILED.decode() not in str(error) or time.monotonic() > retry_until:
                    raise self._unavailable(error) from error
            time.sleep(EXEC_START_PAUSE_S)

    def open_terminal(
        self,
        cmd: list[str],
        *,
        user: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        size: tuple[int, int] = (24, 80),
        timeout: float | None = None,
    ) -> SocketTerminal:
        """Start `cmd` inside with a TTY (Docker's exec with tty and stdin), as `user`, in
        `cwd`, `size` (rows, columns): see rdbench/sandbox/terminal.py. Closing the terminal
        kills every process the session started (its exec marker). `timeout` is not
        enforced here: the caller ends the session on time (a container has no per-command
        CPU-time limit)."""
        require_command(cmd, cwd=cwd, env=env)
        user = user or AGENT_USER
        marker = uuid.uuid4().hex
        environment = {**user_env(user), **(env or {}), EXEC_MARKER: marker}
        api = self._client.api
        try:
            exec_id = str(api.exec_create(self.id, cmd, stdin=True, tty=True, user=user,
                                          workdir=cwd or AGENT_HOME,
                                          environment=environment)["Id"])  # fmt: skip
            sock = api.exec_start(exec_id, tty=True, socket=True)
        except docker.errors.APIError as error:
            raise self._unavailable(error) from error

        def resize(rows: int, cols: int) -> None:
            api.exec_resize(exec_id, height=rows, width=cols)

        def exit_code() -> int | None:
            try:
                state = api.exec_inspect(exec_id)
            except docker.errors.NotFound:  # removed with its container: killed
                return -9
            code = state.get("ExitCode")
            return None if state.get("Running") or code is None else int(code)

        terminal = SocketTerminal(sock, resize=resize, exit_code=exit_code,
                                  kill=lambda: self._kill_marked(marker, user))  # fmt: skip
        terminal.resize(*size)
        log.info("sandbox.terminal", backend="docker", container=self.id[:12], user=user)
        return terminal

    def _new_oom_kills(self) -> bool:
        """True when the kernel killed something in the container for want of memory since
        the last look (its cgroup's oom_kill count, v2 or v1, went up)."""
        script = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control"
        try:
            _, output = self._container.exec_run(["sh", "-c", f"{script} 2>/dev/null"],
                                                 user="root")  # fmt: skip
        except docker.errors.APIError:
            return False
        counts = [int(line.split()[1]) for line in output.decode(errors="replace").splitlines()
                  if line.startswith("oom_kill ") and line.split()[1].isdigit()]  # fmt: skip
        seen, self._oom_kills = self._oom_kills, max(counts, default=self._oom_kills)
        return self._oom_kills > seen

    def _kill_marked(self, marker: str, user: str) -> None:
        """Kill every process carrying the exec marker `marker` (a command and all it started).

        From the host when rdbench can (root, in the engine's pid namespace): that works even
        when the command filled the container's pid limit (a fork bomb), where no new exec
        could start. Otherwise by a command run inside the container."""
        namespace = self._pid_namespace()
        if namespace is not None:
            _kill_in_namespace(namespace, f"{EXEC_MARKER}={marker}".encode())
            return
        script = (
            'for d in /proc/[0-9]*; do grep -qaF "$0" "$d/environ" 2>/dev/null '
            '&& kill -9 "${d#/proc/}" 2>/dev/null; done; true'
        )
        kill = ["sh", "-c", script, f"{EXEC_MARKER}={marker}"]
        try:
            self._client.api.exec_start(
                self._client.api.exec_create(self.id, kill, user=user)["Id"])
        except docker.errors.APIError as error:
            log.warning("sandbox.kill_failed", container=self.id[:12], error=str(error))

    def _pid_namespace(self) -> str | None:
        """The container's pid namespace as the host names it (`pid:[n]`), when rdbench can
        see and kill its processes from the host; else None."""
        if self._pid_ns is not None or os.geteuid() != 0:
            return self._pid_ns
        try:
            self._container.reload()
            init_pid = int(self._container.attrs["State"]["Pid"])
            namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
            own = os.readlink("/proc/self/ns/pid")
        except (docker.errors.APIError, KeyError, TypeError, ValueError, OSError):
            return None
        if init_pid <= 0 or namespace == own:  # the engine is not in our pid namespace
            return None
        self._pid_ns = namespace
        return namespace

    def write_file(self, path: str, data: bytes | str, *, user: str = AGENT_USER) -> None:
        """Create or replace `path` (parent folders are made as needed), owned by `user`."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        folder, name = posixpath.split(sandbox_path(path))
        archive = single_file_tar(name, payload, owner=user)
        try:
            self._put(folder, archive)
        except SandboxFileNotFound:
            self.exec(["mkdir", "-p", folder], user=user).check(f"mkdir -p {folder}")
            self._put(folder, archive)

    def read_file(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes of `path`; SandboxOutputLimit when larger than `max_bytes`."""
        try:
            stream, stat = self._container.get_archive(sandbox_path(path))
        except docker.errors.NotFound as error:
            raise SandboxFileNotFound(f"No such file in the sandbox: {path}") from error
        except docker.errors.APIError as error:
            raise self._unavailable(error) from error
        if stat.get("mode", 0) & (1 << 31):
            raise SandboxFileNotFound(f"{path} is a directory, not a file")
        if max_bytes is not None and stat.get("size", 0) > max_bytes:
            raise SandboxOutputLimit(f"{path} is {stat['size']} bytes, over the cap {max_bytes}")
        return first_file(b"".join(stream))

    def put_dir(self, local_dir: str, path: str, *, user: str = AGENT_USER) -> None:
        """Copy the contents of host folder `local_dir` into `path` inside, owned by `user`."""
        self._put(sandbox_path(path), folder_tar(local_dir, owner=user, private=user == "root"))

    def get_dir(self, path: str, *, max_bytes: int = GET_DIR_LIMIT) -> bytes:
        """A gzip tar of the folder `path` inside, names relative to it (held in memory:
        for small folders; export_dir streams)."""
        return dir_in_memory(self, path, max_bytes)

    def export_dir(
        self, path: str, dest: BinaryIO, *, max_bytes: int | None = None, user: str = AGENT_USER
    ) -> Exported:
        """Stream a gzip tar of the contents of folder `path`, made inside by GNU tar as
        `user`, into `dest`; ArchiveTooLarge past `max_bytes` (see the Sandbox protocol)."""
        folder = sandbox_path(path)
        check_usage(self, folder, max_bytes, user=user)
        sink = ArchiveSink(dest, max_bytes)
        returncode, stderr, timed_out = self._stream_out(
            ["sh", "-c", EXPORT_SCRIPT, "sh", folder], user=user, sink=sink
        )
        if sink.over and max_bytes is not None:
            raise too_large(f"its archive passed {max_bytes / MIB:.1f} MB", max_bytes)
        if timed_out:
            raise ArchiveError(f"Archiving {path} took longer than {STREAM_TIMEOUT_S:.0f} s")
        if returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        skipped = export_outcome(returncode, stderr, path)
        return Exported(size=sink.size, skipped=skipped)

    def _stream_out(
        self, cmd: list[str], *, user: str, sink: ArchiveSink
    ) -> tuple[int, str, bool]:
        """Run `cmd` with its stdout streamed into `sink` (killed once the sink is full or
        past STREAM_TIMEOUT_S); its exit status, stderr (capped) and whether it timed out."""
        marker = uuid.uuid4().hex
        api = self._client.api
        environment = {**user_env(user), EXEC_MARKER: marker}
        try:
            exec_id = api.exec_create(self.id, cmd, user=user, workdir="/",
                                      environment=environment)["Id"]  # fmt: skip
            stream = api.exec_start(exec_id, stream=True, demux=True)
        except docker.errors.APIError as error:
            raise self._unavailable(error) from error
        stopped = threading.Event()
        lock = threading.Lock()

        def stop() -> None:  # from another thread: the stream must keep draining meanwhile
            with lock:
                if stopped.is_set():
                    return
                stopped.set()
            try:
                self._kill_marked(marker, user)
            except docker.errors.APIError as error:
                log.warning("sandbox.stream_kill_failed", error=str(error))

        timer = threading.Timer(STREAM_TIMEOUT_S, stop)
        timer.daemon = True
        timer.start()
        stderr = bytearray()
        try:
            for out, err in stream:
                if out and not sink.add(out) and not stopped.is_set():
                    threading.Thread(target=stop, daemon=True).start()
                if err and len(stderr) < STDERR_KEPT:
                    stderr += err[: STDERR_KEPT - len(stderr)]
        except Exception as error:  # the connection dropped: the sandbox went away
            raise self._unavailable(error) from error
        finally:
            timer.cancel()
        try:
            code = api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.APIError as error:
            raise self._unavailable(error) from error
        timed_out = stopped.is_set() and not sink.over
        return (-9 if code is None else int(code)), stderr.decode("utf-8", "replace"), timed_out

    def import_archive(self, source: Path, path: str, *, user: str = AGENT_USER) -> None:
        """Unpack the host's gzip tar `source` into folder `path`: streamed into /tmp inside
        (as one file), unpacked there by GNU tar as `user`, then removed."""
        name = f".rdbench-import-{uuid.uuid4().hex}.tar.gz"
        try:
            self._container.put_archive("/tmp", file_as_tar_member(source, name, owner=user))
        except docker.errors.APIError as error:
            raise self._unavailable(error) from error
        result = self.exec(["sh", "-c", IMPORT_SCRIPT, "sh", sandbox_path(path), f"/tmp/{name}"],
                           user=user, timeout=STREAM_TIMEOUT_S)  # fmt: skip
        if result.timed_out:
            raise ArchiveError(f"Unpacking the workspace took longer than {STREAM_TIMEOUT_S:.0f} s")
        if result.returncode == 3:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {path}")
        unpack_outcome(result.returncode, result.stderr)

    def _put(self, folder: str, archive: bytes) -> None:
        try:
            self._container.put_archive(folder, archive)
        except docker.errors.NotFound as error:
            raise SandboxFileNotFound(f"No such folder in the sandbox: {folder}") from error
        except docker.errors.APIError as error:
            if "read-only" in str(error):
                raise SandboxError(f"Cannot write into {folder}: {WRITABLE_HINT}") from error
            raise self._unavailable(error) from error

    def _unavailable(self, error: Exception) -> SandboxUnavailable:
        return SandboxUnavailable(f"The Docker sandbox {self.id[:12]} failed: {error}")

    def close(self) -> None:
        """Remove the container; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            log.warning("sandbox.close_failed", container=self.id[:12], error=str(error))
        self._remove_disk()
        log.info("sandbox.close", backend="docker", container=self.id[:12])

    def _remove_disk(self) -> None:
        if self.disk is not None:
            self.disk.remove()

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _OutputReader(threading.Thread):
    """Drains a demultiplexed exec stream, keeping at most `limit` bytes of each stream."""

    def __init__(self, stream: Any, limit: int):
        super().__init__(daemon=True)
        self._stream = stream
        self._limit = limit
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False

    def run(self) -> None:
        try:
            for out, err in self._stream:
                self._keep(self.stdout, out)
                self._keep(self.stderr, err)
        except Exception as error:  # the connection dropped: the sandbox went away
            self._keep(self.stderr, f"\n[rdbench: output stream failed: {error}]".encode())

    def _keep(self, buffer: bytearray, chunk: bytes | None) -> None:
        if not chunk:
            return
        room = self._limit - len(buffer)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        buffer.extend(chunk)


def _kill_in_namespace(namespace: str, needle: bytes, *, limit_s: float = KILL_GRACE_S) -> int:
    """SIGKILL, from the host, every process in pid namespace `namespace` whose environment
    holds `needle`, again and again until none is left (a forking command may spawn between a
    scan and its kill) or `limit_s` passed; return how many kills were sent."""
    kills = 0
    deadline = time.monotonic() + limit_s
    while True:
        found = [pid for pid in _host_pids()
                 if _namespace_of(pid) == namespace and needle in _environ_of(pid)]
        if not found:
            return kills
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                kills += 1
        if time.monotonic() > deadline:
            log.warning("sandbox.kill_incomplete", left=len(found))
            return kills
        time.sleep(0.02)


def _host_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _namespace_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _environ_of(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read()
    except OSError:
        return b""


def _make_disk(config: SandboxConfig) -> SandboxDisk | None:
    """The sandbox's size-limited disk, with its folders. None, with a warning, when rdbench
    does not run as root (it cannot mount one): the container's own layer is then writable,
    with no limit on its size."""
    if os.geteuid() != 0:
        log.warning("sandbox.docker.no_disk_limit", reason="rdbench does not run as root",
                    consequence="no limit on the host disk the sandbox uses")  # fmt: skip
        return None
    disk = SandboxDisk(hostdirs.STATE_DIR / hostdirs.new_name("docker"), config.disk_mb)
    try:
        disk.make_folders()
    except BaseException:
        disk.remove()
        raise
    return disk


def _disk_volumes(disk: SandboxDisk | None) -> dict[str, dict[str, str]]:
    """The disk's folders as Docker bind mounts (as on bwrap, /grader is one in every sandbox:
    root-only, and empty but in a grading sandbox)."""
    if disk is None:
        return {}
    return {str(disk.folder / name): {"bind": inside, "mode": "rw"}
            for name, inside in DISK_FOLDERS.items()}  # fmt: skip


def _channel_volume(config: SandboxConfig) -> dict[str, dict[str, str]]:
    """A person's channel folder (config.channel_dir), bound read-only at CHANNEL_DIR."""
    if config.channel_dir is None:
        return {}
    return {config.channel_dir: {"bind": CHANNEL_DIR, "mode": "ro"}}


def _default_image(client: docker.DockerClient) -> str:
    from rdbench.image import image_tag

    tag = image_tag()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound as error:
        raise SandboxUnavailable(
            f"Sandbox image {tag} is missing; build it with `rdbench image build`"
        ) from error
    return tag


def list_containers(client: Any, filters: dict[str, Any], attempts: int = 3) -> list[Any]:
    """Every container (running or not) matching `filters`. The SDK inspects each container
    it lists, so one removed in between (by a reaper, or the run it belongs to) makes the
    whole listing fail with NotFound: list again."""
    for attempt in range(attempts):
        try:
            return list(client.containers.list(all=True, filters=filters))
        except docker.errors.NotFound:
            if attempt == attempts - 1:
                raise
    return []


def remove_leftovers(*, everything: bool = False, state_dir: Path = hostdirs.STATE_DIR,
                     ) -> list[str]:  # fmt: skip
    """Remove rdbench containers whose owning process is gone (all of them with
    `everything`), then those processes' Docker disks; return the short ids of the containers
    removed."""
    client = connect()
    removed = []
    for container in list_containers(client, {"label": LABEL}):
        owner = container.labels.get(f"{LABEL}.pid", "")
        if not everything and owner.isdigit() and hostdirs.process_alive(int(owner)):
            continue
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            continue  # removed meanwhile (by its reaper, say)
        removed.append(container.short_id)
        log.info("sandbox.gc", container=container.short_id, owner_pid=owner)
    hostdirs.remove_dead(everything=everything, kinds={"docker"}, state_dir=state_dir)
    return removed


class DockerBackend:
    """The Docker backend as registered (`rdbench.sandboxes` entry point `docker`): a
    container per sandbox on the local engine. `auto` prefers it where an engine answers."""

    name = "docker"
    priority = 10

    def problem(self) -> str | None:
        """Why no Docker sandbox can start here (no engine answers), or None."""
        try:
            connect().close()
        except SandboxUnavailable as error:
            return str(error)
        return None

    def prepare(self, image: str) -> str | None:
        """Nothing to make: Docker runs the built image itself."""
        return None

    def remove_leftovers(self, everything: bool) -> list[str]:
        """Remove containers (and their disks) of runs that ended; their short ids."""
        return remove_leftovers(everything=everything)

    def start(self, config: SandboxConfig, **options: Any) -> DockerSandbox:
        """A new container sandbox (option: `client`, a docker.DockerClient)."""
        return DockerSandbox(config, **options)
