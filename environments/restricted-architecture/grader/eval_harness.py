"""Run the agent's model on one token file, recording every torch operation of its forward pass.

score.py copies this file to a directory the agent user may read and runs it as that user, in
a fresh isolated interpreter (`python -I`: no usercustomize, no .pth file, no PYTHON* variable
of the agent's is honoured), so nothing of the agent's runs before the recorders are in place:

    python -I eval_harness.py WORKSPACE TOKENS_NPY VOCAB OUT_DIR [--alone]

It imports WORKSPACE/model.py (the workspace goes at the END of sys.path: it cannot shadow
torch or the standard library), calls build_model(), loads WORKSPACE/model.pt with
torch.load(weights_only=True), and runs the model in eval mode under torch.no_grad() on the
tokens, BATCH rows at a time. It writes OUT_DIR/logits.bin (raw float32, C order, [rows,
length, VOCAB]) and OUT_DIR/report.txt (one `key=value` line each), then leaves through
os._exit so no exit hook of the agent's runs afterwards.

What it reports is evidence from a process the agent's code shares. Against the easy ways to
tamper with it: the output is written with os.open/os.write captured before the agent's code is
imported, from builtin types only (so patching json, numpy or os later changes nothing); no
other torch mode may be on the stacks around each forward call (an extra mode of the agent's
could rewrite results while the recorders are idle); and a canary operation after each call
proves the recorder still sees operations. Code built to dig out the recorder itself (through
the garbage collector, frames or torch internals, with names assembled at run time) could
still hide operations: score.py trusts this report only together with its own static check of
the source (restrictions.py forbids the obvious handles) and runs the harness in two separate
fresh processes.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

# captured before the agent's code is imported: patching os later does not reach these
_open, _write, _close, _exit = os.open, os.write, os.close, os._exit
_listdir, _stat, _getpid, _getuid = os.listdir, os.stat, os.getpid, os.getuid

BATCH = 256
ESCAPES = frozenset({"numpy", "tolist", "__array__", "__array_wrap__", "__dlpack__", "data_ptr",
                     "untyped_storage", "storage", "_typed_storage"})
"""Tensor methods that hand a tensor's values to code outside torch."""


class OpRecorder(TorchDispatchMode):
    """Records the name of every aten (or other) operation run while `active`."""

    def __init__(self, canary: torch.Tensor) -> None:
        super().__init__()
        self.active = False
        self.ops: set[str] = set()
        self.canary = canary
        self.canary_seen = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if any(arg is self.canary for arg in args):
            self.canary_seen = True
        elif self.active:
            self.ops.add(func.name())
        return func(*args, **(kwargs or {}))


class EscapeRecorder(TorchFunctionMode):
    """Records tensor methods, run while `active`, that take values out of torch."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.escapes: set[str] = set()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if self.active and name in ESCAPES:
            self.escapes.add(name)
        return func(*args, **(kwargs or {}))


def _write_file(path: str, data: bytes) -> None:
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    view = memoryview(data)
    while view:
        view = view[_write(fd, view) :]
    _close(fd)


def _finish(out_dir: str, report: dict[str, Any], logits: np.ndarray | None) -> None:
    if logits is not None:
        _write_file(out_dir + "/logits.bin", logits.tobytes())
    lines = "".join(f"{key}={value}\n" for key, value in report.items())
    _write_file(out_dir + "/report.txt", lines.encode("utf-8", "replace"))
    _exit(0)


def _other_processes() -> list[str]:
    """Processes of this user other than this one (with --alone, there should be none)."""
    me, uid, found = str(_getpid()), _getuid(), []
    for name in _listdir("/proc"):
        if name.isdigit() and name != me:
            try:
                if _stat("/proc/" + name).st_uid == uid:
                    found.append(name)
            except OSError:
                continue
    return found


def _clean(text: str) -> str:
    return " ".join(text.split())


def main() -> None:
    """Import, build, load and run the agent's model; write logits and the report."""
    workspace, tokens_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[4]
    vocab = int(sys.argv[3])
    alone = sys.argv[5:] == ["--alone"]  # the grader runs us as a user with no other process
    tokens = torch.from_numpy(np.load(tokens_path).astype(np.int64))
    rows, length = tokens.shape
    torch.set_num_threads(2)
    torch.manual_seed(0)
    canary = torch.zeros(1)
    ops, escapes = OpRecorder(canary), EscapeRecorder()
    report: dict[str, Any] = {"error": "", "ops": "", "escapes": "", "modules": "",
                              "processes": "", "recorder_intact": True}
    logits = np.zeros((rows, length, vocab), dtype=np.float32)
    stage = "importing model.py"
    try:
        with escapes, ops:
            sys.path.append(workspace)
            import model as agent_model

            stage = "calling build_model()"
            net = agent_model.build_model()
            if not isinstance(net, torch.nn.Module):
                raise TypeError(f"build_model() returned a {type(net).__name__}, not a Module")
            stage = "loading model.pt"
            state = torch.load(os.path.join(workspace, "model.pt"), map_location="cpu",
                               weights_only=True)
            net.load_state_dict(state)
            net.eval()
            stage = "running the forward pass"
            with torch.no_grad():
                for start in range(0, rows, BATCH):
                    batch = tokens[start : start + BATCH].clone()
                    ops.active = escapes.active = True
                    out = net(batch)
                    ops.active = escapes.active = False
                    ops.canary_seen = False
                    torch.add(canary, 1)
                    dispatch_modes = _get_current_dispatch_mode_stack()
                    function_modes = _get_current_function_mode_stack()
                    if (not ops.canary_seen or len(dispatch_modes) != 1 or dispatch_modes[0]
                            is not ops or len(function_modes) != 1
                            or function_modes[0] is not escapes):
                        report["recorder_intact"] = False
                    if alone and not report["processes"]:
                        report["processes"] = ",".join(_other_processes())
                    if type(out) is not torch.Tensor:
                        raise TypeError(f"the model returned a {type(out).__name__}; "
                                        "it must return a plain torch.Tensor of logits")
                    expected = (len(batch), length, vocab)
                    if tuple(out.shape) != expected or not out.dtype.is_floating_point:
                        raise ValueError(f"the model returned {out.dtype} logits of shape "
                                         f"{tuple(out.shape)}; expected floats of shape "
                                         f"{expected}")
                    logits[start : start + len(batch)] = out.detach().float().numpy()
    except BaseException as error:  # the agent's code failed: say where, for the message
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        report["error"] = _clean(f"{stage}: {text[-600:]}")
        logits = None
    report["ops"] = ",".join(sorted(ops.ops))
    report["escapes"] = ",".join(sorted(escapes.escapes))
    root = os.path.realpath(workspace)
    report["modules"] = ",".join(sorted(
        os.path.relpath(os.path.realpath(path), root)
        for path in (getattr(module, "__file__", None) for module in list(sys.modules.values()))
        if isinstance(path, str) and os.path.isabs(path)
        and os.path.realpath(path).startswith(root + os.sep)
    ))
    _finish(out_dir, report, logits)


if __name__ == "__main__":
    main()
