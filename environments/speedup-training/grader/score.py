"""Grade a speedup-training workspace: time the original training and the agent's train.py,
interleaved, on seeds of the grader's; check every model train.py saved; score the speed-up.

Runs as root in the grading sandbox, beside `tolerance.py`, `runner.py`, `trusted_train.py`,
`original/train.py` and `rdbench_grading.py`:

    python score.py --split validation|test --workspace /home/agent

1. runner.py, started here as root, imports numpy and torch (with OMP_NUM_THREADS=1 and
   MKL_NUM_THREADS=1) and forks every timed run, so no run pays for starting Python or for
   those imports, and every run starts from the same state.
2. The grader's own copy of the original training is forked first, as root (the agent's code
   can neither signal nor trace it), from a root-owned folder, for the split's seed. It runs
   alone for its first SLOT_S seconds, before any of the agent's code; then it is paused and
   resumed in slices of SLOT_S seconds until it ends.
3. While it is paused, the agent's `train.py --seed SEED --out PATH` runs, forked as the agent
   user, each time from a fresh copy of the submitted workspace (removed after the run with
   what the agent user left in the temporary folders): first on the split's seed, then on
   other hidden seeds, so a run cannot reuse what an earlier one left. It runs again, up to
   MAX_RUNS times, while its runs so far used less CPU time than AGENT_SHARE of the
   original's CPU time so far (CPU time, not wall time: on a busy machine the original takes
   longer but not more CPU, so the number of runs does not grow with the load); then the last
   runs come after the original has ended, if
   needed. Slices of the original
   and runs of train.py so alternate, and so do the cores they are pinned to (the cores of a
   virtual machine can differ in speed). After every run, every process of the agent user is
   killed and reaped (runner.py is their "subreaper"): the run's CPU time is user + system
   time of every process it started, measured by the grading sandbox's cgroup counter where
   it is visible (Docker), which also counts a child its parent never waited for.
4. raw = ln(counted CPU time of the original / CPU time of train.py's fastest run), where the
   original's epochs after the first (the same work each; runner.py notes its CPU time at the
   end of every epoch) count at the fastest one's CPU time. Load on the machine only ever
   slows work down: the fastest run and the fastest epoch are the least disturbed.
5. Every run's model must load with torch.load(weights_only=True) into the original
   architecture and lie within the tolerance of tolerance.py: the first run's of the original's
   model, the others' of the model that trusted_train.py (the reference solution, a float32
   re-implementation of the original, about 1e-6 from it) trains for their seed.
Nothing the agent left in the workspace (models, logs, timings) is read.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from types import ModuleType
from typing import Any, NoReturn

import numpy as np
import torch
from rdbench_grading import (
    ArtifactError,
    FreshWorkspaces,
    emit,
    fastest,
    grade_main,
    kill_agent_processes,
    make_agent_dir,
    pinned_core,
    read_agent_file,
    remove_tree,
    shown,
)
from tolerance import (
    MAX_MODEL_BYTES,
    ORIGINAL,
    ModelError,
    compare,
    load_original,
    model_from_bytes,
)

HERE = os.path.dirname(os.path.abspath(__file__))

SEEDS = {"validation": 52_817, "test": 90_413}  # hidden: the agent cannot precompute them
SLOT_S = 0.5  # the original runs this long between two runs of train.py
MAX_RUNS = 12  # runs of train.py
AGENT_SHARE = 0.6  # train.py runs again while its CPU time so far is below this share
ORIGINAL_TIMEOUT_S = 300  # running time of the original
AGENT_TIMEOUT_S = 300  # wall-clock time of one run of train.py
MIN_CPU_S = 0.01  # a floor for the ratio: no real training takes less
PARAM_NAMES = ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias")


def read_model(path: str, original: ModuleType) -> dict[str, torch.Tensor]:
    """The model a training saved at `path` (read_agent_file: no link followed, a regular
    file, at most MAX_MODEL_BYTES); ModelError saying what is wrong with it."""
    try:
        data = read_agent_file(path, MAX_MODEL_BYTES,
                               missing="no model file was written at the --out path")
    except ArtifactError as error:
        raise ModelError(str(error)) from None
    return model_from_bytes(data, original)


class GraderError(RuntimeError):
    """The grader's own machinery or original training failed: not the agent's fault."""


def run_seed(split: str, run: int) -> int:
    """The seed of train.py's run number `run` (0-based) on `split`; run 0: the original's."""
    if run == 0:
        return SEEDS[split]
    return int(np.random.default_rng([SEEDS[split], run]).integers(1, 2**31 - 1))


class Runner:
    """runner.py, started as a child of this process: one command, one answer."""

    def __init__(self, scratch: str):
        self.errors = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115  (closed in close)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", os.path.join(HERE, "runner.py")],
            cwd=scratch,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                 "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )

    def ask(self, **command: Any) -> dict[str, Any]:
        """Send one command, return its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        answer = self.proc.stdout.readline()
        if not answer:
            self.proc.wait()
            self.errors.seek(0)
            tail = self.errors.read().decode("utf-8", "replace")[-800:]
            raise GraderError(f"runner.py died (exit {self.proc.returncode}): {tail}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        """Stop it (it kills the original, if that still runs)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()


def _tail(path: str, chars: int = 800) -> str:
    """The end of a run's stderr (or stdout)."""
    texts = []
    for suffix in ("err", "out"):
        try:
            with open(f"{path}.{suffix}", "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 4 * chars))
                texts.append(handle.read().decode("utf-8", "replace").strip())
        except OSError:
            texts.append("")
    return (texts[0] or texts[1])[-chars:] or "(no output)"


def trusted_model(seed: int) -> dict[str, torch.Tensor]:
    """The model trusted_train.py (the reference solution) trains for `seed`, as float64."""
    import trusted_train

    params, _ = trusted_train.train(seed)
    return {name: p.detach().to(torch.float64) for name, p in zip(PARAM_NAMES, params, strict=True)}


def counted_cpu_s(total_s: float, epochs_s: list[float]) -> float:
    """The original's CPU time as scored: its epochs after the first (the same work each)
    counted at the fastest one's CPU time; the rest (data, first epoch, saving) as measured."""
    if not epochs_s:
        return total_s
    return total_s - sum(epochs_s) + len(epochs_s) * min(epochs_s)


class Grading:
    """One grading: the timed runs, then the checks."""

    def __init__(self, split: str, workspace: str, scratch: str):
        self.split = split
        self.workspace = workspace
        self.scratch = scratch
        self.logs = os.path.join(scratch, "logs")
        os.mkdir(self.logs, 0o700)
        self.original = load_original()
        self.runs: list[dict[str, Any]] = []
        self.models: list[dict[str, torch.Tensor]] = []
        self.details: dict[str, Any] = {"split": split, "seed": run_seed(split, 0)}
        self.workspaces = FreshWorkspaces(workspace, scratch)  # before any of the agent's code
        self.slices = 0  # slices of the original so far

    def invalid(self, message: str) -> NoReturn:
        """The verdict for a submission that failed."""
        self.details["runs"] = self.runs
        emit(None, valid=False, message=message, details=self.details)

    def run_agent(self, runner: Runner) -> None:
        """One run of train.py; its model is read (and its folder removed) at once."""
        number = len(self.runs)
        seed = run_seed(self.split, number)
        out_dir = make_agent_dir(os.path.join(self.scratch, f"agent-out-{number}"))
        model_path = os.path.join(out_dir, "model.pt")
        log = os.path.join(self.logs, f"run-{number}")
        with self.workspaces.fresh() as copy:  # its own copy of the workspace, removed after
            run = runner.ask(
                do="run_agent",
                script=os.path.join(copy, "train.py"),
                args=["--seed", str(seed), "--out", model_path],
                cwd=copy,
                log=log,
                timeout=AGENT_TIMEOUT_S,
                cpu=pinned_core(number),
            )
            model = self._read_model(run, number, log, model_path)
        self.models.append(model)
        remove_tree(out_dir)

    def _read_model(
        self, run: dict[str, Any], number: int, log: str, model_path: str
    ) -> dict[str, torch.Tensor]:
        """The model of run `number`, or the verdict that the submission failed."""
        self.runs.append(
            {key: round(value, 4) if isinstance(value, float) else value
             for key, value in run.items()}
        )
        which = f"run {number + 1}" if number else "the first run"
        if run["timed_out"]:
            self.invalid(f"train.py ({which}) timed out after {AGENT_TIMEOUT_S}s")
        if run["returncode"] != 0:
            self.invalid(f"train.py failed ({which}): exit code {run['returncode']}: "
                         f"{_tail(log)}")
        try:
            return read_model(model_path, self.original)
        except ModelError as error:
            self.invalid(f"train.py's model ({which}): {error}")

    def next_core(self) -> int:
        """The core of the original's next slice: they take turns, as train.py's runs do."""
        self.slices += 1
        return pinned_core(self.slices - 1)

    def more_runs(self, original_cpu_s: float) -> bool:
        """Whether train.py runs again."""
        if not self.runs:
            return True
        used = sum(run["cpu_s"] for run in self.runs)
        return len(self.runs) < MAX_RUNS and used < AGENT_SHARE * original_cpu_s

    def time_runs(self, runner: Runner) -> tuple[dict[str, torch.Tensor], float]:
        """Run the original and train.py interleaved; the original's model and CPU time."""
        code_dir = os.path.join(self.scratch, "original")
        os.mkdir(code_dir, 0o700)
        script = shutil.copy(ORIGINAL, os.path.join(code_dir, "train.py"))
        model_path = os.path.join(code_dir, "model.pt")
        state = runner.ask(
            do="start_original",
            script=script,
            args=["--seed", str(run_seed(self.split, 0)), "--out", model_path],
            cwd=code_dir,
            log=os.path.join(self.logs, "original"),
            seconds=SLOT_S,
            cpu=self.next_core(),
        )
        while state["state"] == "paused":
            if state["running_s"] > ORIGINAL_TIMEOUT_S:
                raise GraderError(f"the original training ran over {ORIGINAL_TIMEOUT_S}s")
            if self.more_runs(state["cpu_so_far_s"]):
                self.run_agent(runner)
            state = runner.ask(do="resume_original", seconds=SLOT_S, cpu=self.next_core())
        agent_ran = len(self.runs)
        while self.more_runs(state["cpu_so_far_s"]):
            self.run_agent(runner)
        self.details.update(original_running_s=round(state["running_s"], 3))
        if state["returncode"] != 0:
            if not agent_ran:
                tail = _tail(os.path.join(self.logs, "original"))
                raise GraderError(f"the grader's original training failed: exit code "
                                  f"{state['returncode']}: {tail}")
            self.invalid("the original training failed after train.py had run: something your "
                         "code did interfered with grading")
        try:
            model = read_model(model_path, self.original)
        except ModelError as error:
            raise GraderError(f"the original training left no usable model: {error}") from error
        epochs = [end - begin for begin, end in itertools.pairwise(state["epoch_end_cpu_s"])]
        self.details.update(
            original_total_cpu_s=round(state["cpu_s"], 3),
            original_epoch_cpu_s=[round(epoch, 4) for epoch in epochs],
        )
        return model, counted_cpu_s(state["cpu_s"], epochs)

    def check(self, original_model: dict[str, torch.Tensor]) -> list[Any]:
        """Compare every run's model with its reference; invalid at the first outside."""
        results = []
        for number, model in enumerate(self.models):
            seed = run_seed(self.split, number)
            reference = original_model if number == 0 else trusted_model(seed)
            result = compare(self.original, model, reference, seed)
            problem = result.problem()
            if problem:
                which = f"run {number + 1}'s, on another seed" if number else "the first run's"
                self.details.update(distance=result.distance, loss=result.loss)
                self.invalid(f"train.py's model ({which}) is not the original training's "
                             f"model: {problem}")
            results.append(result)
        return results


def grade(split: str, workspace: str, scratch: str) -> None:
    """Time the runs, check every model, emit the verdict."""
    if not os.path.isfile(os.path.join(workspace, "train.py")):
        emit(None, valid=False, message="there is no train.py in the workspace")
    torch.set_num_threads(1)
    kill_agent_processes()  # nothing of the agent's may run during the original's timing
    grading = Grading(split, workspace, scratch)
    runner = Runner(scratch)
    try:
        original_model, original_s = grading.time_runs(runner)
    finally:
        runner.close()
    results = grading.check(original_model)
    cpu = [run["cpu_s"] for run in grading.runs]
    agent_s = fastest(cpu, MIN_CPU_S)
    raw = math.log(original_s / agent_s)
    first = results[0]
    grading.details.update(
        original_cpu_s=round(original_s, 3),
        agent_cpu_s=round(agent_s, 4),
        runs=grading.runs,
        distance=first.distance,
        max_distance=max(result.distance for result in results),
        loss=first.loss,
        original_loss=first.original_loss,
    )
    times = "its only run" if len(cpu) == 1 else f"the fastest of its {len(cpu)} runs"
    message = (
        f"speed-up {shown(original_s / agent_s)}x over the original training on the {split} "
        f"split (score ln(speed-up) = {shown(raw)}; CPU time: original {shown(original_s)}s, "
        f"train.py {shown(agent_s)}s, {times}); every model within tolerance (parameter "
        f"distance up to {grading.details['max_distance']:.1e}; first run's held-out loss "
        f"{shown(first.loss)} vs the original's {shown(first.original_loss)})"
    )
    emit(raw, valid=True, message=message, details=grading.details)



if __name__ == "__main__":
    grade_main(grade, scratch="speedup-training-grade")
