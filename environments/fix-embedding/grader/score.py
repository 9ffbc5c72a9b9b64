"""Grade a fix-embedding workspace: load its model.pt into the grader's own WindowMLP and
measure the next-token cross-entropy on a hidden corpus of the chain.

Runs as root in the grading sandbox, beside `generate.py`, `model.py` (the grader's copy of
the fixed architecture) and `rdbench_grading.py`:

    python score.py --split validation|test --workspace /home/agent

No code of the agent's runs: model.pt is read as bytes (never through a link), loaded with
torch.load(weights_only=True), and its keys, shapes, dtypes and values are checked before the
weights go into the grader's own model. The raw score is log(loss - H), H the chain's exact
entropy rate (lower is better).

The scale (task.toml [scoring]): the task measures repairing the trained model, so its start
anchor is not the corrupted model.pt (raw 1.44) but what retraining from scratch gives, the
shipped train.py run with its default arguments (raw -2.448). That shortcut, which needs no
diagnosis and no repair, normalizes to 0, as does anything no better;
tests/test_fix_embedding.py runs it and grades it.
"""

from __future__ import annotations

import io
import math

import torch
from generate import make_chain, sample
from model import WindowMLP, windows
from rdbench_grading import emit, grade_main, read_workspace_file, shown

MAX_MODEL_BYTES = 10_000_000  # the expected state_dict is about 30 kB
MIN_EXCESS = 0.002
"""Floor of loss - H in the score. The loss is measured on a finite corpus, so even the true
chain scores H plus sampling noise (standard error about 0.0009 nats on either split): a gap
below 0.002 nats cannot be told from a perfect model, and is scored as 0.002 instead of taking
the log of noise (or of a negative number)."""
BATCH = 65_536


def load_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """The checked state_dict in `data`; ValueError saying what is wrong with it."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle is the submission's fault
        raise ValueError(
            "model.pt could not be loaded with torch.load(weights_only=True) "
            f"({type(error).__name__}); save it with torch.save(model.state_dict(), 'model.pt')"
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"model.pt must hold a state_dict (a dict), not a {type(loaded).__name__}")
    expected = WindowMLP().state_dict()
    missing = sorted(set(expected) - set(loaded))
    extra = sorted(str(key) for key in set(loaded) - set(expected))
    if missing or extra:
        raise ValueError(
            f"model.pt must have exactly the keys {sorted(expected)}; "
            f"missing: {missing[:5]}, unexpected: {extra[:5]}"
        )
    checked = {}
    for key, reference in expected.items():
        tensor = loaded[key]
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise ValueError(f"model.pt: {key} is not a dense tensor")
        if tensor.dtype != torch.float32:
            raise ValueError(f"model.pt: {key} has dtype {tensor.dtype}; expected torch.float32")
        if tuple(tensor.shape) != tuple(reference.shape):
            raise ValueError(
                f"model.pt: {key} has shape {tuple(tensor.shape)}; "
                f"expected {tuple(reference.shape)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"model.pt: {key} holds NaN or infinite values")
        checked[key] = tensor.detach().clone().contiguous()
    return checked


def cross_entropy(model: WindowMLP, tokens: torch.Tensor) -> tuple[float, int]:
    """Mean next-token cross-entropy (nats) over every full window of `tokens`, and its count."""
    context, target = windows(tokens)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(target), BATCH):
            logits = model(context[start : start + BATCH]).double()
            total += float(
                torch.nn.functional.cross_entropy(
                    logits, target[start : start + BATCH], reduction="sum"
                )
            )
    return total / len(target), len(target)


def grade(split: str, workspace: str) -> None:
    """Score the workspace's model.pt on `split` and emit the verdict."""
    torch.set_num_threads(2)
    try:
        state = load_state_dict(read_workspace_file(workspace, "model.pt", MAX_MODEL_BYTES))
    except ValueError as error:
        emit(None, valid=False, message=str(error))
    model = WindowMLP()
    model.load_state_dict(state)
    model.eval()
    chain = make_chain()
    floor = chain.entropy_rate
    loss, n_tokens = cross_entropy(model, torch.from_numpy(sample(chain, split)))
    excess = loss - floor
    raw = math.log(max(excess, MIN_EXCESS))
    details = {"split": split, "loss": loss, "floor": floor, "excess": excess,
               "n_tokens": n_tokens}
    message = (
        f"{split} split: cross-entropy {shown(loss)} nats/token, floor {shown(floor)}, "
        f"score log(loss - floor) = {shown(raw)} (lower is better)"
    )
    if excess < MIN_EXCESS:
        message += f"; loss - floor is below {MIN_EXCESS}, scored as {MIN_EXCESS}"
    emit(raw, valid=True, message=message, details=details)



if __name__ == "__main__":
    grade_main(grade)
