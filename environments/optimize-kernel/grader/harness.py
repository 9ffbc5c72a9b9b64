"""Runs one kernel on one input, for the grader, which times it from outside.

    python -I harness.py KERNEL_DIR CPU

Runs as the agent user, in KERNEL_DIR. Imports `kernel` from there, warms up the input and
output code (the first np.load of an .npz imports zipfile), says `ready` on stdout, then reads
one line `go INPUT.npz OUTPUT.npy` from stdin, calls kernel.edit_distance on the input's
arrays, saves what it returns, says `done` and exits. The grader counts CPU time from just before
it writes the input (which does not exist before) until, after the `done`, it has killed the
process and everything else of the agent user's; only then does it check the saved output,
so saying `done` early only gets a submission marked invalid.

Until the `go` the process is pinned to core CPU (the grader alternates the core from one
repeat to the next: the cores of a virtual machine can differ in speed); then it may run on
every core again (the kernel's threads or processes may spread; their CPU time all counts).
"""

import io
import os
import sys

NAMES = ("a", "a_len", "b", "b_len")


def main() -> None:
    """Import the kernel, handshake, run it once, save its output, say done, exit."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(sys.argv[2])})
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the kernel prints goes to stderr, not into the protocol
    import numpy as np

    warm = io.BytesIO()
    np.savez(warm, **{name: np.zeros(1, dtype=np.int64) for name in NAMES})
    with np.load(io.BytesIO(warm.getvalue()), allow_pickle=False) as data:
        [data[name] for name in NAMES]
    np.save(io.BytesIO(), np.zeros(1, dtype=np.int64), allow_pickle=False)

    sys.path.insert(0, sys.argv[1])
    import kernel

    protocol.write("ready\n")
    protocol.flush()
    command = sys.stdin.readline().split()
    if len(command) != 3 or command[0] != "go":
        sys.exit(f"harness: expected 'go INPUT OUTPUT', got {command!r}")
    os.sched_setaffinity(0, cores)
    with np.load(command[1], allow_pickle=False) as data:
        arrays = {name: data[name] for name in NAMES}
    result = np.asarray(kernel.edit_distance(**arrays))
    np.save(command[2], result, allow_pickle=False)
    protocol.write("done\n")
    protocol.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
