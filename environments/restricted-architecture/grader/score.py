"""Grade a restricted-architecture workspace: check that the model's forward pass uses no
forbidden operation, that it is causal, and score its next-token cross-entropy on a hidden
corpus of the chain as log(loss - H), H the chain's exact entropy rate (lower is better).

Runs as root in the grading sandbox, beside generate.py, restrictions.py, eval_harness.py and
rdbench_grading.py:

    python score.py --split validation|test --workspace /home/agent

1. Static check (root, no code run): model.py and every workspace file it imports may not
   contain `/`, `//`, `**`, `%` or a forbidden name (restrictions.py).
2. The workspace is handed to root (read-only for the agent user), so nothing the agent's code
   writes there survives a run.
3. eval_harness.py runs the model as the agent user, in a fresh process, twice: on the split's
   corpus, and on its causality probe (every row cut at a hidden position and continued with a
   fresh run of the chain). Between the runs every file the agent user owns in the temporary
   directories is deleted and its processes are killed, so the second run cannot learn
   anything from the first.
4. The grader reads the logits of both runs, computes log-softmax and the cross-entropy itself,
   checks the operations both runs recorded against the allowed list (and that no other
   process of the agent user was running during the forward pass), and requires the
   predictions before each row's cut to be the same in both runs (a model that looks at the
   tokens it predicts is not causal).

Residual risk: the runtime record comes from a process the agent's code shares, so code built to
switch the recorders off while it computes (and to hide from the static check by building
names at run time) could pass. The static check forbids the obvious handles (_python_dispatch,
TorchDispatchMode, _C, eval, ...), both runs must agree, and anything the record misses must
still make a causal model whose source names no forbidden operation.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import LENGTH, VOCAB, make_chain, probe, sample
from rdbench_grading import (
    AGENT_USER,
    emit,
    kill_agent_processes,
    make_agent_dir,
    parse_args,
    remove_tree,
    run_as_agent,
    shown,
    walk_tree,
)
from restrictions import check_sources, disallowed_ops, op_name

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval_harness.py")
HARNESS_TIMEOUT_S = 180  # per run; the reference needs a few seconds
WARMUP = 8  # positions scored: WARMUP..LENGTH-1, each with at least 8 tokens of context
CAUSAL_TOLERANCE = 1e-3  # largest allowed change of a log-probability before the cut (nats)
MIN_EXCESS = 0.005
"""Floor of loss - H in the score. The loss is measured on a finite corpus (about 500,000
scored positions over both runs), so even the true chain scores H plus sampling noise
(standard error about 0.0015 nats): a gap below 0.005 nats cannot be told from a perfect model
and is scored as 0.005 rather than taking the log of noise (or of a negative number)."""
IMPOSSIBLE_EXCESS = -0.012
"""A loss this far below H (about 8 standard errors) cannot come from a causal model."""
MAX_LOGITS_BYTES = 64_000_000
SCRATCH_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
"""Where the agent user may write in the grading sandbox once its home is locked."""


def lock_workspace(workspace: str) -> None:
    """Give every file of the workspace to root, readable but not writable by the agent."""
    if os.geteuid() != 0:
        return
    for folder, dirs, files in walk_tree(workspace):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            os.lchown(path, 0, 0)
            if not os.path.islink(path):
                os.chmod(path, (os.lstat(path).st_mode & 0o755) | 0o444 | (
                    0o111 if os.path.isdir(path) else 0))
    os.chown(workspace, 0, 0)
    os.chmod(workspace, 0o755)


def wipe_agent_files() -> None:
    """Kill the agent user's processes and delete what it owns in the temporary directories
    (and System V shared memory, semaphores and queues): the next run starts from nothing."""
    kill_agent_processes()
    if os.geteuid() != 0:
        return
    if shutil.which("ipcrm"):
        subprocess.run(["ipcrm", "--all"], capture_output=True, check=False)
    import pwd

    uid = pwd.getpwnam(AGENT_USER).pw_uid
    for root in SCRATCH_ROOTS:
        if not os.path.isdir(root):
            continue
        for folder, dirs, files in walk_tree(root):
            for name in list(dirs) + files:
                path = os.path.join(folder, name)
                try:
                    owner = os.lstat(path).st_uid
                except OSError:
                    continue
                if owner != uid:
                    continue
                if name in dirs:
                    dirs.remove(name)
                    remove_tree(path)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of a file the agent's process wrote; ValueError unless plain and modest."""
    if not os.path.lexists(path) or os.path.islink(path):
        raise ValueError(f"{os.path.basename(path)} is missing")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{os.path.basename(path)} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{os.path.basename(path)} is too large")
    return data


class Invalid(Exception):
    """The submission breaks a rule; the message says which (the agent may see it)."""


def run_harness(workspace: str, scratch: str, name: str, tokens: np.ndarray,
                timings: dict[str, float]) -> np.ndarray:
    """Run eval_harness.py on `tokens` as the agent user; its checked logits (float64).
    Adds the run's wall-clock time to `timings`."""
    io_dir = make_agent_dir(os.path.join(scratch, name))
    os.chmod(io_dir, 0o700)
    tokens_path = os.path.join(io_dir, "tokens.npy")
    np.save(tokens_path, tokens)
    os.chmod(tokens_path, 0o644)
    run = run_as_agent(
        [sys.executable, "-I", os.path.join(scratch, "harness", "eval_harness.py"), workspace,
         tokens_path, str(VOCAB), io_dir, *(["--alone"] if os.geteuid() == 0 else [])],
        cwd=io_dir,
        timeout=HARNESS_TIMEOUT_S,
    )
    timings[f"{name}_s"] = round(run.elapsed_s, 2)
    try:
        if not run.ok:
            raise Invalid(f"evaluating the model failed: {run.tail()}")
        try:
            report = parse_report(read_regular(os.path.join(io_dir, "report.txt"), 1_000_000))
        except ValueError as error:
            raise Invalid(f"the evaluation wrote no report ({error}); {run.tail()}") from None
        if report.get("error"):
            raise Invalid(f"evaluating the model failed while {report['error']}")
        _check_report(report, workspace)
        expected = (*tokens.shape, VOCAB)
        try:
            data = read_regular(os.path.join(io_dir, "logits.bin"), MAX_LOGITS_BYTES)
        except ValueError as error:
            raise Invalid(f"the evaluation's logits could not be read ({error})") from None
        if len(data) != 4 * math.prod(expected):
            raise Invalid(f"the evaluation's logits have {len(data)} bytes, expected float32 "
                          f"{expected}")
        logits = np.frombuffer(data, dtype=np.float32).reshape(expected)
        if not np.isfinite(logits).all():
            raise Invalid("the model's logits hold NaN or infinite values")
        return logits.astype(np.float64)
    finally:
        remove_tree(io_dir)
        wipe_agent_files()


def parse_report(data: bytes) -> dict[str, str]:
    """The harness's `key=value` lines as a dict."""
    lines = data.decode("utf-8", "replace").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _items(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def _check_report(report: dict[str, str], workspace: str) -> None:
    """Invalid if the run used a forbidden operation or loaded unchecked code."""
    if report.get("recorder_intact") != "True":
        raise Invalid("the model's code interfered with the operation recorder (another torch "
                      "mode on the stack, or the recorder stopped seeing operations)")
    processes = _items(report.get("processes", ""))
    if processes:
        raise Invalid(f"the model's code started other processes ({len(processes)} running "
                      "during the forward pass); the model must run in the grader's process")
    escapes = _items(report.get("escapes", ""))
    if escapes:
        raise Invalid(f"the forward pass took tensor values out of torch ({', '.join(escapes)})")
    bad = disallowed_ops([op_name(op) for op in _items(report.get("ops", ""))])
    if bad:
        raise Invalid(f"the forward pass used {', '.join('aten.' + b for b in bad[:8])}, "
                      "not among the allowed operations (see instructions.md)")
    modules = _items(report.get("modules", ""))
    try:
        _, problems = check_sources(workspace, extra=tuple(modules))
    except ValueError as error:
        raise Invalid(str(error)) from None
    if problems:
        raise Invalid(_describe(problems))


def _describe(problems: list[Any]) -> str:
    shown = "; ".join(str(p) for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"the model's code uses what the restriction forbids: {shown}{more}"


def log_probs(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in float64 (the grader's, outside the restriction)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def grade(split: str, workspace: str, scratch: str) -> None:
    """Check and score the workspace's model on `split`; emit the verdict."""
    for name in ("model.py", "model.pt"):
        if not os.path.isfile(os.path.join(workspace, name)):
            emit(None, valid=False, message=f"there is no {name} in the workspace")
    try:
        checked, problems = check_sources(workspace)
    except ValueError as error:
        emit(None, valid=False, message=str(error))
    if problems:
        emit(None, valid=False, message=_describe(problems), details={"files": checked})
    lock_workspace(workspace)
    wipe_agent_files()
    harness_dir = os.path.join(scratch, "harness")
    os.makedirs(harness_dir, mode=0o755)
    shutil.copy(HARNESS, harness_dir)
    os.chmod(os.path.join(harness_dir, "eval_harness.py"), 0o644)

    started = time.perf_counter()
    chain = make_chain()
    tokens = sample(chain, split)
    probe_tokens, cut = probe(chain, split, tokens)
    timings = {"data_s": round(time.perf_counter() - started, 2)}
    try:
        first = log_probs(run_harness(workspace, scratch, "run-1", tokens, timings))
        second = log_probs(run_harness(workspace, scratch, "run-2", probe_tokens, timings))
    except Invalid as error:
        emit(None, valid=False, message=str(error), details={"split": split, **timings})

    before_cut = np.arange(LENGTH)[None, :] < cut[:, None]
    change = np.abs(first - second).max(axis=2) * before_cut
    if change.max() > CAUSAL_TOLERANCE:
        row, position = np.unravel_index(int(change.argmax()), change.shape)
        emit(None, valid=False, details={"split": split, "max_change": float(change.max())},
             message=(f"the model is not causal: its prediction at position {position} changed "
                      f"by {change.max():.3g} nats when only tokens after position "
                      f"{cut[row] - 1} changed"))

    def nll(logp: np.ndarray, toks: np.ndarray) -> np.ndarray:
        target = toks[:, WARMUP:].astype(np.int64)
        return -np.take_along_axis(logp[:, WARMUP - 1 : -1], target[..., None], axis=2)[..., 0]

    losses = np.concatenate([nll(first, tokens).ravel(), nll(second, probe_tokens).ravel()])
    loss = float(losses.mean())
    floor = chain.entropy_rate
    excess = loss - floor
    details = {"split": split, "loss": loss, "floor": floor, "excess": excess,
               "n_positions": int(losses.size), "files_checked": checked, **timings}
    if excess < IMPOSSIBLE_EXCESS:
        emit(None, valid=False, details=details,
             message=(f"the cross-entropy {shown(loss)} is below the entropy rate "
                      f"{shown(floor)} of the corpus, which no causal model can reach: the "
                      "model must be using the tokens it predicts"))
    raw = math.log(max(excess, MIN_EXCESS))
    message = (f"{split} split: cross-entropy {shown(loss)} nats/token, floor {shown(floor)}, "
               f"score log(loss - floor) = {shown(raw)} (lower is better)")
    if excess < MIN_EXCESS:
        message += f"; loss - floor is below {MIN_EXCESS}, scored as {MIN_EXCESS}"
    emit(raw, valid=True, message=message, details=details)


def main() -> None:
    """Grade the workspace named on the command line."""
    args = parse_args()
    scratch = tempfile.mkdtemp(prefix="restricted-architecture-grade-")
    os.chmod(scratch, 0o711)  # root-owned: the agent may enter it but not list or rename
    try:
        grade(args.split, os.path.abspath(args.workspace), scratch)
    finally:
        remove_tree(scratch)


if __name__ == "__main__":
    main()
