#!/usr/bin/env bash
# Make this host ready for rdbench's sandboxes, idempotently:
#  - a Docker engine that answers (Debian's docker.io, dockerd started in the background when
#    no engine runs and there is no service manager to start it);
#  - debootstrap, to bootstrap the sandbox image's base where no registry can be reached;
#  - bubblewrap, the daemon-less sandbox backend;
#  - e2fsprogs (mkfs.ext4), for each sandbox's size-limited disk (a loop-mounted ext4 image);
#  - chromium and chromium-driver, the headless browser the leaderboard site's tests drive;
#  - tmux, the terminal the human agent's tests type into.
# Needs root to install; without root it only says what is missing.
set -uo pipefail

PYTHON=${PYTHON:-python3}
LOG=${RDBENCH_DOCKERD_LOG:-/var/log/rdbench-dockerd.log}

engine_answers() {
    "$PYTHON" -c 'import docker; docker.from_env(timeout=5).ping()' >/dev/null 2>&1
}

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing ${missing[*]}; install them (as root: apt-get install ${missing[*]})"
    fi
fi

if engine_answers; then
    echo "setup: Docker engine answers"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
    echo "setup: no Docker engine answers and none can be started here; Docker tests will skip"
    exit 0
fi
echo "setup: starting dockerd (log: $LOG)"
# setsid: dockerd gets its own session, so it outlives the shell job (and process group)
# that started it.
setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
for _ in $(seq 1 60); do
    if engine_answers; then
        echo "setup: Docker engine answers"
        exit 0
    fi
    sleep 1
done
echo "setup: dockerd did not answer within 60 s; see $LOG" >&2
tail -n 20 "$LOG" >&2
exit 1
