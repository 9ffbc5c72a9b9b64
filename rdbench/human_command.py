#!/usr/bin/env python3
"""rdbench-score, rdbench-submit, rdbench-status and rdbench-help: the commands a person has
in their sandbox's shell, one script under four names (installed by rdbench/human_channel.py;
the Python standard library only, as it runs on the sandbox's python3).

Each sends one request over the channel's socket and prints the runner's reply:
- rdbench-score: grade the workspace on the validation split (working time stops meanwhile),
  showing the seconds go by, then the score.
- rdbench-submit: ask for confirmation, then end the session: the workspace is graded on the
  hidden test split.
- rdbench-status: working time left, scores so far, steps.
- rdbench-help: these commands.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import Any, TextIO

SOCKET = "/run/rdbench/channel.sock"
OPERATIONS = {"rdbench-score": "score", "rdbench-submit": "submit",
              "rdbench-status": "status", "rdbench-help": "help"}  # fmt: skip
PROGRESS = {"score": "grading on the validation split"}
CONFIRM = "Submit your workspace for final grading? [y/N] "


def ask(op: str, *, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Send `op` and return the runner's reply, showing the time go by for a long one."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(SOCKET)
    except OSError as error:
        return {"ok": False, "error": f"cannot reach rdbench at {SOCKET}: {error}"}
    with client:
        client.sendall(json.dumps({"op": op}).encode() + b"\n")
        started = time.monotonic()
        progress = PROGRESS.get(op)
        live = progress is not None and out.isatty()
        if live:
            out.write(f"{progress}...")
            out.flush()
        data = b""
        while not data.endswith(b"\n"):
            ready, _, _ = select.select([client], [], [], 1.0)
            if ready:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            elif live:
                out.write(f"\r{progress}... {time.monotonic() - started:.0f} s")
                out.flush()
        if progress is not None:
            out.write(f"\r{progress}... {time.monotonic() - started:.0f} s\n")
            out.flush()
    try:
        reply = json.loads(data.decode())
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        return {"ok": False, "error": "rdbench closed the channel without an answer"}
    return reply


def main(argv: list[str]) -> int:
    """Run the command named by argv[0]; 0 on success, 1 when refused, 2 when misused."""
    name = os.path.basename(argv[0])
    op = OPERATIONS.get(name)
    if op is None:
        print(f"{name}: call this as one of {', '.join(OPERATIONS)}", file=sys.stderr)
        return 2
    if len(argv) > 1:
        print(f"{name} takes no arguments (see rdbench-help)", file=sys.stderr)
        return 2
    if op == "submit":
        print(CONFIRM, end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("Not submitted; go on working.")
            return 1
    reply = ask(op)
    if not reply.get("ok"):
        print(f"{name}: {reply.get('error')}", file=sys.stderr)
        return 1
    print(reply.get("text", ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
