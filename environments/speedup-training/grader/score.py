"""Grade a speedup-training workspace: time the original training and the agent's train.py on
a seed of the grader's, check the agent's model against the original's, score the speed-up.

Runs as root in the grading sandbox, beside `tolerance.py`, `original/train.py` and
`rdbench_grading.py`:

    python score.py --split validation|test --workspace /home/agent

1. The grader's own copy of the original training runs first, as the agent user, before any of
   the agent's code has run in this sandbox, from a root-owned directory with `python -I` (no
   user site-packages, no PYTHON* variables): nothing in the workspace can slow it down.
   Its model is read into this process and its folder deleted before the agent's code runs.
2. The agent's `python train.py --seed SEED --out PATH` runs as the agent user, from the
   workspace; every agent process is killed when it exits.
3. Both get the same thread settings and are timed from outside by the CPU time (user +
   system) of every process the run started: this grader is their "subreaper", so even a
   daemon that left its parent is re-parented to it, killed after the run and reaped, and
   its CPU time counted. CPU time, unlike wall-clock time, barely moves when other work
   shares the machine. The agent's model must load with torch.load(weights_only=True) into
   the original architecture and lie within the tolerance of `tolerance.py` of the
   original's model; then raw = log(cpu_original / cpu_agent).
Nothing the agent left in the workspace (models, logs, timings) is read.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile

import torch  # imported before the timed runs: its files are then warm in the page cache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rdbench_grading import (
    AgentRun,
    emit,
    kill_agent_processes,
    make_agent_dir,
    parse_args,
    run_as_agent,
)
from tolerance import (
    ORIGINAL,
    THREAD_ENV,
    ModelError,
    adopt_orphans,
    children_cpu_s,
    compare,
    load_original,
    read_model,
    reap_orphans,
)

SEEDS = {"validation": 52_817, "test": 90_413}  # hidden: the agent cannot precompute them
ORIGINAL_TIMEOUT_S = 300
AGENT_TIMEOUT_S = 300
MIN_CPU_S = 0.01  # a floor for the ratio: no real run of Python takes less


class GraderError(RuntimeError):
    """The grader's own original training failed: an infrastructure error, not the agent's."""


def cpu_timed_run(cmd: list[str], cwd: str, env: dict[str, str], timeout: float) -> AgentRun:
    """run_as_agent, with the CPU seconds of every process of the run in details["cpu_s"]."""
    before = children_cpu_s()
    run = run_as_agent(cmd, cwd=cwd, timeout=timeout, env=env)
    reap_orphans()  # run_as_agent killed what was left; its zombies are ours (adopt_orphans)
    run.details["cpu_s"] = children_cpu_s() - before
    return run


def train_original(seed: int, scratch: str) -> tuple[dict[str, torch.Tensor], AgentRun]:
    """Run the grader's copy of the original training; its model and its timed run."""
    code_dir = os.path.join(scratch, "original")
    os.makedirs(code_dir, mode=0o755)
    script = os.path.join(code_dir, "train.py")
    shutil.copyfile(ORIGINAL, script)
    os.chmod(script, 0o644)
    out_dir = make_agent_dir(os.path.join(scratch, "original-out"))
    model_path = os.path.join(out_dir, "model.pt")
    run = cpu_timed_run(
        [sys.executable, "-I", script, "--seed", str(seed), "--out", model_path],
        cwd=code_dir,
        env={**THREAD_ENV, "HOME": out_dir},
        timeout=ORIGINAL_TIMEOUT_S,
    )
    if not run.ok:
        raise GraderError(f"the grader's original training failed: {run.tail()}")
    try:
        model = read_model(model_path, load_original())
    except ModelError as error:
        message = f"the grader's original training left no usable model: {error}"
        raise GraderError(message) from error
    shutil.rmtree(out_dir)
    return model, run


def grade(split: str, workspace: str, scratch: str) -> None:
    """Time both trainings for `split`'s seed, check the agent's model, emit the verdict."""
    if not os.path.isfile(os.path.join(workspace, "train.py")):
        emit(None, valid=False, message="there is no train.py in the workspace")
    seed = SEEDS[split]
    kill_agent_processes()  # nothing of the agent's may run during the original's timing
    reference, original_run = train_original(seed, scratch)

    out_dir = make_agent_dir(os.path.join(scratch, "agent-out"))
    model_path = os.path.join(out_dir, "model.pt")
    run = cpu_timed_run(
        [sys.executable, "train.py", "--seed", str(seed), "--out", model_path],
        cwd=workspace,
        env=THREAD_ENV,
        timeout=AGENT_TIMEOUT_S,
    )
    original_s = original_run.details["cpu_s"]
    agent_s = max(run.details["cpu_s"], MIN_CPU_S)
    details = {
        "split": split,
        "seed": seed,
        "original_cpu_s": round(original_s, 3),
        "agent_cpu_s": round(agent_s, 3),
        "original_wall_s": round(original_run.elapsed_s, 3),
        "agent_wall_s": round(run.elapsed_s, 3),
    }
    if not run.ok:
        details.update(returncode=run.returncode, timed_out=run.timed_out)
        emit(None, valid=False, message=f"train.py failed: {run.tail()}", details=details)
    original = load_original()
    try:
        model = read_model(model_path, original)
    except ModelError as error:
        emit(None, valid=False, message=f"train.py's model: {error}", details=details)
    result = compare(original, model, reference, seed)
    details.update(
        distance=result.distance, loss=result.loss, original_loss=result.original_loss
    )
    problem = result.problem()
    if problem:
        emit(
            None,
            valid=False,
            message=f"train.py's model is not the original training's model: {problem}",
            details=details,
        )
    raw = math.log(original_s / agent_s)
    message = (
        f"speed-up {original_s / agent_s:.2f}x over the original training on the {split} "
        f"split (score log(speed-up) = {raw:.3f}; CPU time: original {original_s:.2f}s, "
        f"train.py {agent_s:.2f}s); model within tolerance (parameter distance "
        f"{result.distance:.1e}, held-out loss {result.loss:.5f} vs {result.original_loss:.5f})"
    )
    emit(raw, valid=True, message=message, details=details)


def main() -> None:
    """Grade the workspace named on the command line."""
    args = parse_args()
    torch.set_num_threads(1)
    adopt_orphans()
    scratch = tempfile.mkdtemp(prefix="speedup-training-grade-")
    os.chmod(scratch, 0o711)  # root-owned: the agent may enter it but not list or rename in it
    try:
        grade(args.split, os.path.abspath(args.workspace), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
