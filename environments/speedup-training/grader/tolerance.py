"""Check train.py against the original training the way the grader does, and time both.

    python check_tolerance.py [--seed SEED]

Runs original/train.py and then train.py with the same seed the way the grader runs them:
each as `__main__` in a process forked from this one, which has already imported numpy and
torch with the grader's thread settings, so neither run pays for starting Python or for those
imports; each run's CPU time (every process it starts included) is measured from outside.
Then it compares the two saved models: the relative distance between their parameters and
their loss on held-out examples must both be within tolerance (see instructions.md). It prints
the times, the speed-up and the verdict.

The grader runs its own copies of this check and of original/train.py, with seeds of its own
and several interleaved runs of train.py: editing them here changes nothing but what you see.
"""

from __future__ import annotations

import os

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(THREAD_ENV)  # before torch is imported: it reads them once, at import

import argparse  # noqa: E402
import atexit  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402  (torch.optim loads it on first use: loaded here, untimed)

HERE = Path(__file__).resolve().parent
ORIGINAL = HERE / "original" / "train.py"
PARAM_TOLERANCE = 1e-4  # relative L2 distance between all parameters
LOSS_TOLERANCE = 0.01  # relative difference of the held-out loss
N_HELD_OUT = 4096
MAX_MODEL_BYTES = 5_000_000
DTYPES = (torch.float32, torch.float64)


class ModelError(ValueError):
    """A model file that cannot be compared: the message says what is wrong with it."""


def load_original(path: Path = ORIGINAL) -> ModuleType:
    """The original training script, imported by path (it defines data and architecture)."""
    spec = importlib.util.spec_from_file_location("original_train", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_model(path: str, original: ModuleType) -> dict[str, torch.Tensor]:
    """The state_dict saved at `path` (model_from_bytes), for the agent's own check (the
    grader reads the file with rdbench_grading.read_agent_file: no link followed, a regular
    file, at most MAX_MODEL_BYTES); ModelError if it cannot be read or is not a model."""
    try:
        return model_from_bytes(Path(path).read_bytes(), original)
    except OSError as error:
        raise ModelError(f"could not read {path} ({error.strerror})") from None


def model_from_bytes(data: bytes, original: ModuleType) -> dict[str, torch.Tensor]:
    """The state_dict saved in `data` as float64 tensors; ModelError if it is not one the
    original architecture accepts (same keys and shapes, float32 or float64, all finite)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # any load failure is the file's fault
        raise ModelError(
            f"torch.load(weights_only=True) could not read the model file ({type(error).__name__})"
        ) from None
    expected = original.make_model(0).state_dict()
    if not isinstance(state, dict) or sorted(map(str, state)) != sorted(expected):
        found = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise ModelError(f"expected a state_dict with keys {sorted(expected)}, found {found}")
    tensors = {}
    for name, value in state.items():
        if type(value) is not torch.Tensor or value.dtype not in DTYPES:
            raise ModelError(f"{name} must be a float32 or float64 tensor")
        if tuple(value.shape) != tuple(expected[name].shape):
            shape = tuple(expected[name].shape)
            raise ModelError(f"{name} has shape {tuple(value.shape)}, expected {shape}")
        if not bool(torch.isfinite(value).all()):
            raise ModelError(f"{name} holds NaN or infinite values")
        tensors[name] = value.detach().to(torch.float64).clone()
    return tensors


def held_out(original: ModuleType, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh examples of `seed`'s teacher (a stream training never draws from)."""
    w_in, w_out = original.make_teacher(np.random.default_rng(seed))
    draws = np.random.default_rng([seed, 1]).standard_normal((N_HELD_OUT, w_in.shape[0] + 1))
    x = draws[:, :-1]
    y = np.sin(2.0 * (x @ w_in)) @ w_out + original.NOISE * draws[:, -1]
    return torch.from_numpy(x), torch.from_numpy(y).unsqueeze(1)


def held_out_loss(
    original: ModuleType, state: dict[str, torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]
) -> float:
    """The mean squared error of the model with parameters `state` on `data`."""
    model = original.make_model(0)
    model.load_state_dict(state)
    with torch.no_grad():
        return float(((model(data[0]) - data[1]) ** 2).mean())


@dataclass(frozen=True)
class Comparison:
    """How far a trained model is from the original training's model for the same seed."""

    distance: float  # ||theta - theta_original|| / ||theta_original|| over all parameters
    loss: float  # held-out mean squared error of the model
    original_loss: float  # the same for the original's model

    @property
    def loss_difference(self) -> float:
        """|loss - original_loss| / original_loss."""
        return abs(self.loss - self.original_loss) / self.original_loss

    def problem(self) -> str:
        """Why the model is outside the tolerance, or "" when it is within."""
        problems = []
        if not self.distance <= PARAM_TOLERANCE:
            problems.append(
                f"its parameters are {self.distance:.2e} (relative L2) away from the original "
                f"training's, more than the tolerance {PARAM_TOLERANCE:.0e}"
            )
        if not self.loss_difference <= LOSS_TOLERANCE:
            problems.append(
                f"its held-out loss {self.loss:.3g} differs from the original's "
                f"{self.original_loss:.3g} by {100 * self.loss_difference:.3g}%, more than "
                f"{100 * LOSS_TOLERANCE:.0f}%"
            )
        return "; ".join(problems)


def compare(
    original: ModuleType, model: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
    seed: int,
) -> Comparison:
    """Compare `model` with `reference`, the original training's model for `seed`."""
    squared = sum(float(((model[n] - reference[n]) ** 2).sum()) for n in reference)
    norm = sum(float((reference[n] ** 2).sum()) for n in reference)
    data = held_out(original, seed)
    return Comparison(
        distance=math.sqrt(squared / norm),
        loss=held_out_loss(original, model, data),
        original_loss=held_out_loss(original, reference, data),
    )


def adopt_orphans() -> None:
    """Make this process the "subreaper" of everything it starts: a process that outlives its
    parent (a daemon, a `setsid` child) is then re-parented here rather than to init, so its
    CPU time is counted when it is reaped (see children_cpu_s)."""
    pr_set_child_subreaper = 36
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children_cpu_s() -> float:
    """User + system CPU seconds of every reaped descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_orphans(timeout_s: float = 5.0) -> None:
    """Reap every child that has exited or is exiting (orphans adopted by adopt_orphans)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            time.sleep(0.02)


def run_forked(
    script: str, args: list[str], prepare: Callable[[], None] | None = None
) -> int:
    """Start `script` with `args` as `__main__` in a child forked from this process; its pid.

    The child is like `python script args...` minus the interpreter's start-up and the imports
    this process has done (numpy, torch): `sys.argv` and `sys.path[0]` are set as Python sets
    them, and at the end it joins its threads, runs its atexit handlers and flushes its output
    as Python's exit does, then exits without tearing the interpreter down. Exit handlers this
    process registered are not run in the child. `prepare` runs in the child first (to
    redirect its output, change its user or folder).
    """
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _forget_exit_handlers()
        if prepare is not None:
            prepare()
        sys.argv = [script, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        code = _run_as_main(script)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _forget_exit_handlers() -> None:
    """In a forked child: drop the exit handlers it inherited (they are this process's: one
    would delete its temporary folder), keeping logging's, which Python registers itself."""
    atexit._clear()
    weakref.finalize._registry.clear()  # type: ignore[attr-defined]
    weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
    if "logging" in sys.modules:
        atexit.register(sys.modules["logging"].shutdown)


def _run_as_main(script: str) -> int:
    """Run `script` as __main__ and finish as the interpreter's exit would; the exit code."""
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    return code & 0xFF


def cpu_s(usage: resource.struct_rusage) -> float:
    """User + system seconds of a resource usage."""
    return usage.ru_utime + usage.ru_stime


def _quiet() -> None:
    """In a forked child: send the script's standard output to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def timed_run(script: Path, args: list[str]) -> tuple[float, float]:
    """Run `script` forked (see run_forked); its CPU and wall-clock seconds."""
    cpu_before, start = children_cpu_s(), time.perf_counter()
    pid = run_forked(str(script), args, prepare=_quiet)
    _, status, _ = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    reap_orphans(timeout_s=0.1)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"FAIL: {script.name} exited with {os.waitstatus_to_exitcode(status)}")
    return children_cpu_s() - cpu_before, wall


def main() -> None:
    """Command line: run both trainings for --seed, compare their models, print the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    original = load_original()
    adopt_orphans()
    with tempfile.TemporaryDirectory() as folder:
        original_path = os.path.join(folder, "original.pt")
        model_path = os.path.join(folder, "model.pt")
        seed = ["--seed", str(args.seed)]
        original_s, original_wall = timed_run(ORIGINAL, [*seed, "--out", original_path])
        model_s, model_wall = timed_run(HERE / "train.py", [*seed, "--out", model_path])
        reference = read_model(original_path, original)
        try:
            model = read_model(model_path, original)
        except ModelError as error:
            sys.exit(f"FAIL: {error}")
    result = compare(original, model, reference, args.seed)
    print(f"CPU time: original/train.py {original_s:.2f}s, train.py {model_s:.3f}s "
          f"(wall clock {original_wall:.2f}s and {model_wall:.3f}s)")
    print(f"speed-up {original_s / model_s:.2f}x, score ln(speed-up) = "
          f"{math.log(original_s / model_s):.3f}")
    print(f"parameter distance {result.distance:.2e} (tolerance {PARAM_TOLERANCE:.0e}), "
          f"held-out loss {result.loss:.5f} vs the original's {result.original_loss:.5f}")
    problem = result.problem()
    print(f"FAIL: the model is outside the tolerance: {problem}" if problem else "PASS")
    sys.exit(1 if problem else 0)


if __name__ == "__main__":
    main()
