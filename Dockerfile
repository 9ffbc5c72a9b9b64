# The sandbox image every rdbench task runs in.
#
#   docker build -t rdbench-sandbox .                      # with internet: a stock Python base
#   docker build --build-arg BASE_IMAGE=my/base:tag .      # any Debian-like base with Python 3.11
#
# `rdbench image build` (rdbench/image.py) builds it for you: offline it bootstraps a Debian base
# with debootstrap and puts a wheelhouse of image/requirements.txt in the build context
# (image/wheelhouse/), so nothing is fetched during the build.
#
# The image holds: an unprivileged user `agent` (uid/gid AGENT_UID, 61000 unless given: a uid
# no host user has; rdbench passes rdbench.sandbox.base.AGENT_UID), home /home/agent, a venv at
# /opt/rdbench-venv (first on PATH) with the task dependencies, and a root-only /grader.
# It has no ENTRYPOINT: sandboxes run it with `sleep infinity` as the command.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- stage 1: the venv (the wheelhouse stays in this stage, out of the final image) ----------
FROM ${BASE_IMAGE} AS venv

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

COPY image/ /tmp/rdbench-image/

RUN set -eu; \
    python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "BASE_IMAGE must have Python 3.11 as python3, found " + sys.version)'; \
    python3 -m venv /opt/rdbench-venv; \
    if ls /tmp/rdbench-image/wheelhouse/*.whl >/dev/null 2>&1; then \
        echo "installing image/requirements.txt from the wheelhouse in the build context"; \
        /opt/rdbench-venv/bin/pip install --no-index --find-links /tmp/rdbench-image/wheelhouse \
            -r /tmp/rdbench-image/requirements.txt; \
    else \
        echo "no wheelhouse in the build context: installing image/requirements.txt from the index"; \
        /opt/rdbench-venv/bin/pip install -r /tmp/rdbench-image/requirements.txt; \
    fi

# ---- stage 2: the sandbox image --------------------------------------------------------------
FROM ${BASE_IMAGE}

ARG AGENT_UID=61000

LABEL rdbench.image="1"

ENV VIRTUAL_ENV=/opt/rdbench-venv \
    PATH=/opt/rdbench-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8

# procps (ps, pkill) and an editor (vi, from vim-tiny: for people working in the sandbox's
# terminal) are missing from slim bases; the bootstrapped base already has them, so apt only
# runs where it is needed (and where a package mirror is reachable).
RUN set -eu; \
    if ! command -v ps >/dev/null || ! command -v pkill >/dev/null || ! command -v vi >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends procps vim-tiny; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid "$AGENT_UID" agent; \
    useradd --uid "$AGENT_UID" --gid "$AGENT_UID" --no-log-init --home-dir /home/agent \
        --create-home --shell /bin/bash agent; \
    install -d -m 700 -o root -g root /grader; \
    for tool in bash sh tar ps pkill kill sleep timeout cp chmod vi; do \
        command -v "$tool" >/dev/null || { echo "BASE_IMAGE lacks '$tool'" >&2; exit 1; }; \
    done

COPY --from=venv /opt/rdbench-venv /opt/rdbench-venv

RUN python3 -c "import numpy, pandas, sklearn, sys; assert sys.prefix == '/opt/rdbench-venv', sys.prefix"

WORKDIR /home/agent
CMD ["/bin/bash"]
