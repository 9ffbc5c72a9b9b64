"""Runs one kernel on one input, for the grader, which times it from outside.

    python -I harness.py KERNEL_DIR

Runs as the agent user, in KERNEL_DIR. Imports `kernel` from there, says `ready` on stdout,
then reads one line `go INPUT.npz OUTPUT.npy` from stdin, calls kernel.edit_distance on the
input's arrays, saves what it returns and exits at once. The grader's clock runs from the `go` line
to this process's exit; the input does not exist before the `go` line.
"""

import os
import sys


def main() -> None:
    """Import the kernel, handshake, run it once, save its output, exit."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the kernel prints goes to stderr, not into the protocol
    import numpy as np

    sys.path.insert(0, sys.argv[1])
    import kernel

    protocol.write("ready\n")
    protocol.flush()
    command = sys.stdin.readline().split()
    if len(command) != 3 or command[0] != "go":
        sys.exit(f"harness: expected 'go INPUT OUTPUT', got {command!r}")
    with np.load(command[1], allow_pickle=False) as data:
        arrays = {name: data[name] for name in ("a", "a_len", "b", "b_len")}
    result = np.asarray(kernel.edit_distance(**arrays))
    np.save(command[2], result, allow_pickle=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
