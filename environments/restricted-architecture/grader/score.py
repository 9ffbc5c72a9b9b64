"""Grade a restricted-architecture workspace: check that the model's forward pass uses no
forbidden operation, that it is causal, and score its next-token cross-entropy on a hidden
corpus of the process as log(loss - H), H the process's loss floor (lower is better): the
expected entropy of its next-token distribution, a Monte Carlo estimate in generate.py.

Runs as root in the grading sandbox, beside generate.py, restrictions.py, export_harness.py,
program.py and rdbench_grading.py:

    python score.py --split validation|test --workspace /home/agent

1. Static check (root, no code run), a cheap first filter: model.py and every workspace file
   it imports may not contain `/`, `//`, `**`, `%` or a forbidden name (restrictions.py).
2. The agent's code runs once, only to make an artifact: export_harness.py, as the agent user
   in its own process (rdbench_grading.run_for_artifact), imports model.py, loads model.pt and
   exports the model with torch.export on random tokens of shape [256, 128], saving the
   ExportedProgram to a file. The grader reads that file's bytes once every process of the
   agent user is dead.
3. program.py, the grader's own code in a child process as root (with a timeout), audits the
   archive so that loading it runs none of its author's code (no pickles but weights-only
   tensors, no compiled code, no guard code, no symbolic shapes), loads it, checks every node
   of the graph (ATen operators of ALLOWED_OPS only; no higher-order operators, no Python
   callables, no other namespace), then runs the graph itself on the split's corpus and on its
   causality probe (every row cut at a hidden position and continued with a fresh run of the
   process), 256 rows a call.
4. The grader computes log-softmax and the cross-entropy itself, and requires the predictions
   before each row's cut to be the same on both corpora (a model that looks at the tokens it
   predicts is not causal).

What holds: the operations checked are the operations that compute the score. The agent's
code never runs while the hidden corpus is evaluated, never shares a process with the grader's
checks, and never sees the hidden corpus; what it does at run time (switching off recorders,
patching torch, Python callbacks such as Tensor.apply_) cannot change the graph the grader
checks and runs, and a model that torch.export cannot capture as a graph of ATen operators
(Python control flow on tensor values, callbacks) is invalid.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from generate import LENGTH, VOCAB, make_chain, probe, sample
from rdbench_grading import (
    ArtifactError,
    emit,
    grade_main,
    read_workspace_file,
    run_for_artifact,
    shown,
)
from restrictions import MAX_SOURCE_BYTES, check_sources

GRADER_DIR = os.path.dirname(os.path.abspath(__file__))
EXPORT_TIMEOUT_S = 180  # the agent's export; the reference needs a few seconds
RUN_TIMEOUT_S = 360  # the grader's own run of the exported graph on both corpora
MAX_EXPORT_BYTES = 200_000_000
WARMUP = 8  # positions scored: WARMUP..LENGTH-1, each with at least 8 tokens of context
CAUSAL_TOLERANCE = 1e-3  # largest allowed change of a log-probability before the cut (nats)
MIN_EXCESS = 0.005
"""Floor of loss - H in the score. The loss is measured on a finite corpus (about 500,000
scored positions over both corpora), so even the true process scores H plus sampling noise
(standard error about 0.0015 nats): a gap below 0.005 nats cannot be told from a perfect model
and is scored as 0.005 rather than taking the log of noise (or of a negative number)."""
IMPOSSIBLE_EXCESS = -0.012
"""A loss this far below H (about 8 standard errors) cannot come from a causal model."""


class Invalid(Exception):
    """The submission breaks a rule; the message says which (the agent may see it)."""


def export_model(workspace: str, scratch: str, timings: dict[str, float]) -> bytes:
    """Run export_harness.py as the agent user; the bytes of the archive it saved."""
    harness_dir = os.path.join(scratch, "harness")
    os.makedirs(harness_dir, mode=0o755)
    harness = shutil.copy(os.path.join(GRADER_DIR, "export_harness.py"), harness_dir)
    os.chmod(harness, 0o644)
    output = os.path.join(scratch, "export", "model.pt2")
    try:
        run, data = run_for_artifact(
            [sys.executable, "-I", harness, workspace, output],
            cwd=workspace, output=output, timeout=EXPORT_TIMEOUT_S, limit=MAX_EXPORT_BYTES,
        )
    except ArtifactError as error:
        lines = error.run.stderr.strip().splitlines() if error.run else []
        said = lines[-1] if lines and lines[-1].startswith("while ") else None
        raise Invalid(f"exporting the model failed {said}" if said
                      else f"exporting the model failed: {error}") from None
    timings["export_s"] = round(run.elapsed_s, 2)
    return data


def run_program(archive: bytes, corpora: list[np.ndarray], scratch: str,
                timings: dict[str, float]) -> list[np.ndarray]:
    """Check and run the exported program on each corpus in program.py (root, a child
    process); the logits of each (float64). Invalid if the program is refused or fails."""
    work = os.path.join(scratch, "program")
    os.mkdir(work, 0o700)
    path = os.path.join(work, "model.pt2")
    with open(path, "wb") as handle:
        handle.write(archive)
    token_files = []
    for index, tokens in enumerate(corpora):
        token_files.append(os.path.join(work, f"tokens-{index}.npy"))
        np.save(token_files[-1], tokens)
    started = time.perf_counter()
    try:
        run = subprocess.run(
            [sys.executable, "-I", os.path.join(GRADER_DIR, "program.py"), path, str(VOCAB),
             work, *token_files],
            capture_output=True, timeout=RUN_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL,
            cwd=work,
        )
    except subprocess.TimeoutExpired:
        raise Invalid(f"running the exported model took longer than {RUN_TIMEOUT_S} s") from None
    timings["run_s"] = round(time.perf_counter() - started, 2)
    invalid = os.path.join(work, "invalid.txt")
    if os.path.exists(invalid):
        with open(invalid, encoding="utf-8") as handle:
            raise Invalid(handle.read())
    if run.returncode != 0:
        if run.returncode < 0:  # killed: out of memory, most likely
            raise Invalid(f"running the exported model was killed (signal {-run.returncode}; "
                          "out of memory?)")
        raise RuntimeError(f"program.py failed: {run.stderr.decode(errors='replace')[-2000:]}")
    return [np.load(os.path.join(work, f"logits-{i}.npy")).astype(np.float64)
            for i in range(len(corpora))]


def _describe(problems: list[object]) -> str:
    shown_problems = "; ".join(str(p) for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"the model's code uses what the restriction forbids: {shown_problems}{more}"


def log_probs(logits: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in float64 (the grader's, outside the restriction)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def grade(split: str, workspace: str, scratch: str) -> None:
    """Check and score the workspace's model on `split`; emit the verdict."""
    for name in ("model.py", "model.pt"):
        if not os.path.isfile(os.path.join(workspace, name)):
            emit(None, valid=False, message=f"there is no {name} in the workspace")
    try:  # the kit's read: no link followed below the workspace, a regular file, capped
        checked, problems = check_sources(
            workspace, read=lambda top, name: read_workspace_file(top, name, MAX_SOURCE_BYTES)
        )
    except ValueError as error:
        emit(None, valid=False, message=str(error))
    if problems:
        emit(None, valid=False, message=_describe(problems), details={"files": checked})
    started = time.perf_counter()
    chain = make_chain()
    tokens = sample(chain, split)
    probe_tokens, cut = probe(chain, split, tokens)
    timings = {"data_s": round(time.perf_counter() - started, 2)}
    try:
        archive = export_model(workspace, scratch, timings)
        first, second = (log_probs(logits) for logits in
                         run_program(archive, [tokens, probe_tokens], scratch, timings))
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



if __name__ == "__main__":
    grade_main(grade, scratch="restricted-architecture-grade")
