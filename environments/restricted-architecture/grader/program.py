"""The grader's side of the exported model: audit, load, check and run the file the export
harness wrote, without running any code of the agent's.

The agent's code runs once, in export_harness.py (as the agent user, in its own process), and
all it leaves is a torch.export archive (`torch.export.save`). Its bytes are the agent's to
choose, so before torch sees them:

- audit_archive (standard library only) refuses every part of the format whose loading runs
  code: pickled weights or constants (torch.load with weights_only=False), custom and opaque
  objects (pickle.loads), compiled AOTInductor models (shared libraries), the legacy layout,
  symbolic shapes (sympy.sympify evaluates their expression strings), guard code (compiled into
  the module by ExportedProgram.module()), and any operator that is not ALLOWED_OPS; the
  example inputs must load with torch.load(weights_only=True) (torch falls back to an
  unrestricted unpickler when that fails);
- load_program then calls torch.export.load on an archive rebuilt, in memory, from exactly
  the files the audit read;
- graph_problems checks the loaded graph, node by node: placeholders, one output, tensor
  attributes, and calls of an ATen operator of ALLOWED_OPS (or operator.getitem on a
  multi-output one). Anything else (higher-order operators, other namespaces, Python
  callables) makes the submission invalid; checked_program checks it again in functional
  form, where a graph that updates a buffer or its input (state carried from one batch of the
  hidden corpus to the next) shows it, and refuses that too;
- run_program executes the checked graph (`ExportedProgram.module()`) on the grader's tokens.

Run by score.py as root in a child process (so a model too slow or too large is stopped by a
timeout), never as the agent user:

    python -I program.py ARCHIVE VOCAB OUT_DIR TOKENS_NPY...

It writes OUT_DIR/logits-<i>.npy for each token file (float32 [rows, LENGTH, VOCAB]), or
OUT_DIR/invalid.txt saying why the program was refused or failed.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import traceback
import zipfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from restrictions import ALLOWED_OPS, op_name

BATCH = 256
"""Rows per call of the exported program: the batch it was exported with."""
MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 1_000_000_000
MAX_NODES = 20_000

_ENTRY_PATTERNS = [re.compile(p) for p in (
    r"archive_format", r"archive_version", r"byteorder", r"\.data/version",
    r"\.data/serialization_id", r"models/model\.json", r"data/sample_inputs/model\.pt",
    r"data/weights/model_weights_config\.json", r"data/weights/weight_[0-9]+",
    r"data/constants/model_constants_config\.json", r"data/constants/tensor_[0-9]+",
)]
"""Every file a torch.export archive of one model without objects or compiled code holds
(relative to the archive's top folder)."""


class Refused(Exception):
    """The exported program cannot be accepted; the message says why (the agent may see it)."""


def audit_archive(data: bytes) -> dict[str, bytes]:
    """The files of the torch.export archive `data` (name below its top folder -> bytes);
    Refused unless loading them runs no code of their author's (see the module docstring).
    Every file is read here once: load_program hands torch exactly these bytes, so no
    difference between two readers of a zip file (duplicate names, hidden records) can show
    torch anything the audit did not see; the graph's nodes lose their free-text metadata."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise Refused(f"the exported model is not a torch.export archive ({error})") from None
    if not infos or len(infos) > MAX_ENTRIES:
        raise Refused(f"the exported model's archive holds {len(infos)} files")
    if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
        raise Refused("the exported model's archive unpacks to more than "
                      f"{MAX_UNPACKED_BYTES} bytes")
    top = infos[0].filename.split("/", 1)[0]
    files: dict[str, bytes] = {}
    for info in infos:
        head, _, relative = info.filename.partition("/")
        if head != top or not any(p.fullmatch(relative) for p in _ENTRY_PATTERNS):
            raise Refused(f"the exported model's archive holds {info.filename[:120]!r}, which "
                          "a torch.export.save of a plain model does not write (compiled "
                          "code, pickled objects and extra files are refused)")
        if relative in files:
            raise Refused(f"the exported model's archive holds {relative!r} twice")
        try:
            files[relative] = archive.read(info)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise Refused(f"the exported model's {relative} cannot be read ({error})") from None
    for name in ("models/model.json", "data/weights/model_weights_config.json",
                 "data/constants/model_constants_config.json", "data/sample_inputs/model.pt"):
        if name not in files:
            raise Refused(f"the exported model's archive has no {name}")
    for config in ("data/weights/model_weights_config.json",
                   "data/constants/model_constants_config.json"):
        for fqn, payload in _json(files, config).get("config", {}).items():
            if not isinstance(payload, dict) or payload.get("use_pickle") is not False:
                raise Refused(f"the exported model stores {fqn!r} pickled; only plain tensors "
                              "are accepted")
            if not re.fullmatch(r"(weight|tensor)_[0-9]+", str(payload.get("path_name"))):
                raise Refused(f"the exported model stores {fqn!r} as an object, not a tensor")
    program = _json(files, "models/model.json")
    if program.get("guards_code") or program.get("range_constraints"):
        raise Refused("the exported model has guards or symbolic shapes; export it with the "
                      "fixed input shape [256, 128] (no dynamic_shapes)")
    _audit_values(program)
    _check_example_inputs(files["data/sample_inputs/model.pt"])
    for node in program["graph_module"]["graph"]["nodes"]:
        node["metadata"] = {}  # free text (stack traces, module paths) nothing here needs
    files["models/model.json"] = json.dumps(program).encode()
    return files


def _json(files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        value = json.loads(files[name])
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused(f"the exported model's {name} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise Refused(f"the exported model's {name} is not a JSON object")
    return value


def _audit_values(program: dict[str, Any]) -> None:
    """No symbolic expression anywhere (sympify evaluates them), no subgraph, and only allowed
    targets in every node, however deep."""
    pending: list[Any] = [program]
    nodes = 0
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if "as_expr" in value or "expr_str" in value:
                raise Refused("the exported model has symbolic shapes; export it with the "
                              "fixed input shape [256, 128] (no dynamic_shapes)")
            if "as_graph" in value:
                raise Refused("the exported model holds a subgraph (of a higher-order "
                              f"operator), {_NOT_ALLOWED}")
            if {"target", "inputs", "outputs"} <= value.keys():
                nodes += 1
                _audit_target(value["target"])
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    if nodes > MAX_NODES:
        raise Refused(f"the exported model's graph has {nodes} nodes, more than {MAX_NODES}")


def _audit_target(target: Any) -> None:
    if target == "_operator.getitem":
        return
    match = re.fullmatch(r"torch\.ops\.aten\.(\w+)\.(\w+)", str(target))
    if not match or op_name(match.group(1)) not in ALLOWED_OPS:
        raise Refused(f"the model uses {_shown_target(str(target))}, {_NOT_ALLOWED}")


def _check_example_inputs(data: bytes) -> None:
    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:  # any failure: torch.export.load would unpickle it unrestricted
        raise Refused("the exported model's example inputs are not plain tensors "
                      f"({type(error).__name__})") from None


_NOT_ALLOWED = ("which is not among the allowed operations (ALLOWED_OPS in "
                "check_restrictions.py: ATen additions, multiplications, matrix products, "
                "cumsum, ReLU, clamp, max/min, comparisons, where, embedding, indexing, "
                "reshaping, concatenation, padding, convolution, ...)")


def _shown_target(target: Any) -> str:
    """`aten.exp.default`, `higher_order.cond`, `math.exp`: what a node calls, for a message."""
    if isinstance(target, str):
        return target.removeprefix("torch.ops.")[:120]
    import torch

    if isinstance(target, torch._ops.HigherOrderOperator):
        text = f"higher_order.{target.name()}"
    elif isinstance(target, torch._ops.OpOverload):
        text = str(target)
    else:
        module = getattr(target, "__module__", None) or "?"
        text = f"{module}.{getattr(target, '__qualname__', type(target).__name__)}"
    return text[:120]


def load_program(data: bytes) -> Any:
    """The torch.export.ExportedProgram in `data`, audited first (Refused if not accepted)."""
    files = audit_archive(data)
    import torch

    audited = io.BytesIO()
    with zipfile.ZipFile(audited, "w", zipfile.ZIP_STORED) as archive:
        for name, content in files.items():
            archive.writestr(f"model/{name}", content)
    audited.seek(0)
    try:
        program = torch.export.load(audited)
    except Exception as error:
        raise Refused(f"the exported model could not be loaded: {_error(error)}") from None
    if program._guards_code:
        raise Refused("the exported model has guards; export it without dynamic_shapes")
    return program


def graph_problems(program: Any) -> list[str]:
    """What in the program's graph is not allowed, one sentence each (empty when all is)."""
    import operator

    import torch

    problems: list[str] = []
    module = program.graph_module
    outputs = 0
    for node in module.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            outputs += 1
        elif node.op == "get_attr":
            if not isinstance(getattr(module, str(node.target), None), torch.Tensor):
                problems.append(f"the graph reads the attribute {node.target!r}, which is not "
                                "a tensor (a subgraph of a higher-order operator?)")
        elif node.op != "call_function":
            problems.append(f"the graph has a {node.op} node ({node.target}); an exported "
                            "model calls functions only")
        elif node.target is operator.getitem:
            continue
        elif not isinstance(node.target, torch._ops.OpOverload):
            higher = isinstance(node.target, torch._ops.HigherOrderOperator)
            kind = "higher-order operator" if higher else "Python callable"
            problems.append(f"the model uses {_shown_target(node.target)} (a {kind}), "
                            f"{_NOT_ALLOWED}")
        elif node.target.namespace != "aten" or op_name(node.target.name()) not in ALLOWED_OPS:
            problems.append(f"the model uses {_shown_target(node.target)}, {_NOT_ALLOWED}")
    if outputs != 1:
        problems.append(f"the graph has {outputs} output nodes, expected 1")
    kinds = [spec.kind for spec in program.graph_signature.output_specs]
    if kinds != [torch.export.graph_signature.OutputKind.USER_OUTPUT]:
        problems.append("the model must return one tensor and change nothing: it may not "
                        "update its buffers or its input (state carried from one call to the "
                        "next, which could learn from the hidden corpus, is not allowed)")
    return sorted(set(problems))


def checked_program(program: Any) -> Any:
    """`program` in functional form (every in-place update turned into an output: an update of
    a buffer or of the input is then visible to graph_problems), Refused unless its graph is
    allowed both before and after that rewrite (which only ever traces allowed operators)."""
    for stage in ("as exported", "in functional form"):
        problems = graph_problems(program)
        if problems:
            raise Refused("; ".join(problems[:5]))
        if stage == "as exported":
            try:
                program = program.run_decompositions({})
            except Exception as error:
                raise Refused(f"the exported model could not be put in functional form: "
                              f"{_error(error)}") from None
    return program


def run_program(program: Any, tokens: Any, vocab: int) -> Any:
    """Logits (float32 numpy [rows, length, vocab]) of the checked program on int tokens
    [rows, length], BATCH rows a call (the last batch padded with zeros). Refused if the program
    does not give a finite float tensor of the right shape."""
    import numpy as np
    import torch

    module = program.module()
    rows, length = tokens.shape
    logits = np.zeros((rows, length, vocab), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, rows, BATCH):
            batch = torch.zeros((BATCH, length), dtype=torch.int64)
            part = torch.from_numpy(np.asarray(tokens[start : start + BATCH], dtype=np.int64))
            batch[: len(part)] = part
            try:
                out = module(batch)
            except Exception as error:
                raise Refused(f"running the exported model failed: {_error(error)}") from None
            if type(out) is not torch.Tensor:
                raise Refused(f"the exported model returned a {type(out).__name__}; it must "
                              "return one tensor of logits")
            expected = (BATCH, length, vocab)
            if tuple(out.shape) != expected or not out.dtype.is_floating_point:
                raise Refused(f"the exported model returned {out.dtype} logits of shape "
                              f"{tuple(out.shape)}; expected floats of shape {expected}")
            values = out.float().numpy()[: len(part)]
            if not np.isfinite(values).all():
                raise Refused("the model's logits hold NaN or infinite values")
            logits[start : start + len(part)] = values
    return logits


def _error(error: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return " ".join(text.split())[-600:]


def main() -> None:
    """Load, check and run ARCHIVE on each TOKENS_NPY; write the logits or invalid.txt."""
    import numpy as np
    import torch

    archive, vocab, out_dir, token_files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    torch.set_num_threads(2)
    try:
        with open(archive, "rb") as handle:
            program = checked_program(load_program(handle.read()))
        for index, path in enumerate(token_files):
            logits = run_program(program, np.load(path), vocab)
            np.save(os.path.join(out_dir, f"logits-{index}.npy"), logits)
    except Refused as refused:
        _write_invalid(out_dir, str(refused))
    except Exception as error:  # the archive is the agent's: any failure reading it is theirs
        _write_invalid(out_dir, f"checking the exported model failed: {_error(error)}")


def _write_invalid(out_dir: str, message: str) -> None:
    with open(os.path.join(out_dir, "invalid.txt"), "w", encoding="utf-8") as handle:
        handle.write(message)


if __name__ == "__main__":
    main()
