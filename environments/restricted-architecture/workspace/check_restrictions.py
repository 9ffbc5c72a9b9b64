"""Check your model against the restriction before you submit: the same rules the grader
applies (it uses its own copy of them; editing this file changes nothing about grading).

    python check_restrictions.py            # checks model.py (+ model.pt if present)

1. Static: model.py and every file of this directory it imports may not contain `/`, `//`,
   `**`, `%` or any of FORBIDDEN_NAMES (as a name, attribute, import or string).
2. Export: the model must be exportable by torch.export at input shape [256, 128] (int64
   token ids), and every node of the exported graph must be an ATen operator of ALLOWED_OPS.
   That graph is what the grader checks and what it runs to score you.
3. Causality: run on public sequences, changing the tokens after a position must not change
   the predictions at or before it.

The rules themselves are in restrictions.py: the grader's own file, copied here unchanged.
"""

from __future__ import annotations

import os

from restrictions import ALLOWED_OPS, FORBIDDEN_NAMES, check_sources, op_name

__all__ = ["ALLOWED_OPS", "FORBIDDEN_NAMES", "check_sources", "graph_problems", "op_name"]


# ---- running the checks on this directory ---------------------------------------------------


def graph_problems(program) -> list[str]:  # type: ignore[no-untyped-def]
    """What in an ExportedProgram's graph is not allowed (the grader's rule)."""
    import operator

    import torch

    problems = []
    for node in program.graph_module.graph.nodes:
        if node.op in ("placeholder", "output") or node.target is operator.getitem:
            continue
        target = node.target
        if node.op == "get_attr":
            if not isinstance(getattr(program.graph_module, str(target), None), torch.Tensor):
                problems.append(f"the graph reads the attribute {target!r}, not a tensor")
        elif node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            problems.append(f"the graph calls {target}, which is not an ATen operator")
        elif target.namespace != "aten" or op_name(target.name()) not in ALLOWED_OPS:
            problems.append(f"the model uses {str(target).removeprefix('torch.ops.')}, not "
                            "among ALLOWED_OPS")
    kinds = [spec.kind for spec in program.graph_signature.output_specs]
    if kinds != [torch.export.graph_signature.OutputKind.USER_OUTPUT]:
        problems.append("the model must return one tensor and may not update its buffers or "
                        "its input (no state carried from one call to the next)")
    return sorted(set(problems))


def _export_problems(here: str) -> list[str]:
    """Export the model as the grader does, check its graph and run it on public data."""
    import io
    import sys

    import numpy as np
    import torch

    sys.path.insert(0, here)
    from model import build_model

    model = build_model()
    weights = os.path.join(here, "model.pt")
    if os.path.exists(weights):
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    example = torch.randint(0, 32, (256, 128), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,))
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return [f"torch.export could not export the model ({type(error).__name__}: {first}); "
                "the forward pass may not branch on tensor values, call back into Python "
                "(Tensor.apply_, ...) or read tensor values into Python"]
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    program = torch.export.load(buffer)  # your own file: the grader audits it before loading
    problems = graph_problems(program)
    if not problems:  # in-place updates become outputs: a buffer updated in forward shows
        program = program.run_decompositions({})
        problems = graph_problems(program)
    if program.range_constraints or program._guards_code:
        problems.append("the exported model has symbolic shapes or guards; export at the fixed "
                        "shape [256, 128]")
    if problems:
        return problems
    tokens = torch.from_numpy(np.load(os.path.join(here, "data", "corpus.npy"))[:256]).long()
    cut = tokens.shape[1] // 2
    changed = tokens.clone()
    changed[:, cut:] = (changed[:, cut:] + 1) % 32
    module = program.module()
    with torch.no_grad():
        logits, other = module(tokens), module(changed)
    if type(logits) is not torch.Tensor or tuple(logits.shape) != (*tokens.shape, 32):
        return [f"the model must return one tensor of shape {(*tokens.shape, 32)}"]
    if not torch.isfinite(logits).all():
        return ["the model's logits hold NaN or infinite values"]
    before = torch.log_softmax(logits[:, :cut].double(), -1)
    after = torch.log_softmax(other[:, :cut].double(), -1)
    change = float((before - after).abs().max())
    if change > 1e-3:
        return [f"not causal: predictions before position {cut} changed by {change:.3g} "
                f"when only tokens from position {cut} on changed"]
    return []


def main() -> None:
    """Check the model of this directory; exit 1 if anything is wrong."""
    here = os.path.dirname(os.path.abspath(__file__))
    checked, problems = check_sources(here)
    print("checked statically:", ", ".join(checked))
    messages = [str(p) for p in problems]
    if not messages:
        messages = _export_problems(here)
    for message in messages:
        print("PROBLEM:", message)
    print("OK: the model passes the restriction checks" if not messages else "FAILED")
    raise SystemExit(1 if messages else 0)


if __name__ == "__main__":
    main()
