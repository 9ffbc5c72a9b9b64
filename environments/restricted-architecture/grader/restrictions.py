"""The rules of the restricted architecture, and the static half of checking them.

The model's forward pass may not divide, exponentiate or take logarithms, nor call anything
that does (softmax, sigmoid, tanh, normalization layers, mean, ...). Two checks enforce it:

- statically (here, run by the grader as root on the source, no code executed), a cheap first
  filter: every .py file of the workspace that the model's code imports may not contain the
  operators `/`, `//`, `**` (or their augmented forms) nor any of FORBIDDEN_NAMES, as a name,
  an attribute or an import;
- on the exported graph (program.py): the agent's code only exports the model with
  torch.export; every operator of the saved graph must be an ATen operator of ALLOWED_OPS, and
  that graph is what the grader runs to score it.

The workspace's check_restrictions.py holds a copy of these rules for the agent; the grader
only ever uses this file.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from dataclasses import dataclass

MAX_SOURCE_BYTES = 1_000_000


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FORBIDDEN_OPERATORS = {ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**", ast.Mod: "%"}

FORBIDDEN_NAMES = _words(
    # division, powers and roots
    "div divide true_divide floor_divide remainder fmod reciprocal pow float_power square "
    "sqrt rsqrt cbrt __truediv__ __rtruediv__ __itruediv__ __floordiv__ __rfloordiv__ "
    "__ifloordiv__ __pow__ __rpow__ __ipow__ __mod__ __rmod__ __imod__ __div__ truediv "
    "floordiv "
    # exponentials, logarithms and the functions made of them
    "exp exp2 expm1 log log2 log10 log1p logit xlogy logaddexp logaddexp2 logsumexp "
    "logcumsumexp softmax log_softmax softmin sigmoid logsigmoid hardsigmoid tanh tanhshrink "
    "softplus softsign gelu silu mish elu selu celu glu erf erfc erfinv special "
    "Softmax LogSoftmax Softmin Softmax2d Sigmoid LogSigmoid Hardsigmoid Tanh Tanhshrink "
    "Softplus Softsign GELU SiLU Mish ELU SELU CELU GLU "
    # normalization, averages and attention built on softmax
    "mean nanmean var std var_mean std_mean norm normalize layer_norm group_norm batch_norm "
    "instance_norm rms_norm local_response_norm cosine_similarity pairwise_distance cdist "
    "LayerNorm GroupNorm BatchNorm1d BatchNorm2d InstanceNorm1d RMSNorm LocalResponseNorm "
    "avg_pool1d AvgPool1d adaptive_avg_pool1d AdaptiveAvgPool1d "
    "scaled_dot_product_attention multi_head_attention_forward MultiheadAttention "
    "Transformer TransformerEncoder TransformerEncoderLayer TransformerDecoder "
    "TransformerDecoderLayer "
    # ways around the checks: code from strings, compilers, the recorder's machinery
    "eval exec compile __import__ importlib operator jit _dynamo inductor "
    "cpp_extension load_inline ctypes TorchDispatchMode TorchFunctionMode _python_dispatch "
    "__torch_dispatch__ __torch_function__ _pop_mode _push_mode _pop_mode_temporarily _C atexit "
    "_get_current_dispatch_mode_stack _get_current_function_mode_stack "
    "_push_on_torch_dispatch_stack _pop_torch_dispatch_stack _set_dispatch_mode "
    "_unset_dispatch_mode gc get_objects inspect builtins __builtins__ __main__ globals locals "
    "vars __dict__ __globals__ __subclasses__ __getattribute__ _getframe f_back f_globals "
    "f_locals settrace setprofile "
    # work done outside this process or thread, where the recorders cannot see it
    "subprocess Popen system popen spawnl spawnv spawnve spawnvp posix_spawn execl execv execve "
    "execvp fork forkpty threading _thread Thread Timer concurrent multiprocessing "
    "ThreadPoolExecutor ProcessPoolExecutor asyncio cffi "
    # tensors leaving torch
    "numpy tolist item __array__ __dlpack__ to_dlpack from_dlpack data_ptr untyped_storage"
)

ALLOWED_OPS = _words(
    # arithmetic without division
    "add sub rsub mul neg addmm addmv addbmm baddbmm mm bmm mv dot matmul linear addcmul lerp "
    "cumsum cumprod sum prod "
    # piecewise-linear functions, comparisons, selection
    "relu relu6 hardtanh clamp clamp_min clamp_max clip leaky_relu threshold maximum minimum "
    "max min amax amin abs sign where masked_fill hardshrink softshrink floor ceil round trunc "
    "gt lt ge le eq ne logical_and logical_or logical_not logical_xor bitwise_and bitwise_or "
    "bitwise_not bitwise_xor argmax argmin topk sort any all isfinite isnan "
    # indexing, shapes and copies
    "embedding index index_select gather scatter scatter_add index_put _index_put_impl "
    "index_add masked_scatter select slice narrow view _unsafe_view reshape _reshape_alias "
    "permute transpose t expand unsqueeze squeeze flatten unflatten unfold cat stack split "
    "split_with_sizes chunk unbind repeat repeat_interleave roll flip tril triu "
    "constant_pad_nd pad diagonal diag_embed alias detach clone contiguous copy "
    "_to_copy to lift_fresh lift_fresh_copy convolution _convolution conv1d "
    "_assert_tensor_metadata "
    # new tensors (never uninitialized memory: `empty` could show what the grader freed)
    "zeros zeros_like ones ones_like full full_like new_zeros new_ones new_full arange eye "
    "scalar_tensor fill zero"
)


def op_name(schema_name: str) -> str:
    """`aten::add_.Tensor` -> `add` (the name ALLOWED_OPS lists: every overload of an allowed
    operator and its in-place form are allowed); other namespaces keep theirs (`myops::exp`)."""
    namespace, _, name = schema_name.partition("::")
    if not name:
        namespace, name = "aten", namespace
    name = name.split(".")[0]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name if namespace == "aten" else f"{namespace}::{name}"


@dataclass(frozen=True)
class Problem:
    """One use of something forbidden in the model's source."""

    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.what}"


def read_source(workspace: str, relative: str) -> bytes:
    """The bytes of the workspace file `relative`, for the agent's own check (the grader
    passes check_sources its own read, rdbench_grading.read_workspace_file: no link followed,
    a regular file, at most MAX_SOURCE_BYTES); ValueError if it cannot be read."""
    try:
        with open(os.path.join(workspace, relative), "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ValueError(f"could not read {relative} ({error.strerror})") from None


def _names(node: ast.AST) -> list[str]:
    """The identifiers `node` uses: a name, an attribute, what an import reads or binds, or a
    string constant (as in getattr(torch, "exp"))."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.alias):
        return [*node.name.split("."), *([node.asname] if node.asname else [])]
    if isinstance(node, ast.ImportFrom) and node.module:
        return node.module.split(".")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return []


def check_tree(tree: ast.AST, relative: str) -> list[Problem]:
    """Every forbidden operator and name in a parsed file."""
    problems = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        operator = getattr(node, "op", None)
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(operator) in FORBIDDEN_OPERATORS:
            symbol = FORBIDDEN_OPERATORS[type(operator)]
            problems.append(Problem(relative, line, f"operator {symbol!r}"))
        for name in _names(node):
            if name in FORBIDDEN_NAMES:
                problems.append(Problem(relative, line, f"forbidden name {name!r}"))
    return sorted(problems, key=lambda problem: problem.line)


def _imported_files(tree: ast.AST, workspace: str, relative: str) -> list[str]:
    """Workspace files (relative paths) that the imports of the file `relative` may load."""
    package = os.path.dirname(relative)
    candidates = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").split(".") if node.module else []
            if node.level:
                parts = package.split(os.sep) if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = [*parts, *base]
            modules = [".".join(base)] + [".".join([*base, a.name]) for a in node.names]
        else:
            continue
        for module in modules:
            parts = [p for p in module.split(".") if p]
            for depth in range(1, len(parts) + 1):
                stem = os.path.join(*parts[:depth])
                candidates += [stem + ".py", os.path.join(stem, "__init__.py")]
    return [c for c in candidates if os.path.lexists(os.path.join(workspace, c))]


def check_sources(workspace: str, entry: str = "model.py", extra: tuple[str, ...] = (),
                  read: Callable[[str, str], bytes] = read_source,
                  ) -> tuple[list[str], list[Problem]]:
    """Statically check `entry` and every workspace file it imports (transitively), plus
    `extra`, each read with `read(workspace, relative)`. Returns the files checked and the
    problems found. ValueError if a file cannot be parsed (the message names it); what `read`
    raises if one cannot be read."""
    queue, seen, problems = [entry, *extra], [], []
    while queue:
        relative = os.path.normpath(queue.pop(0))
        if relative in seen:
            continue
        seen.append(relative)
        source = read(workspace, relative).decode("utf-8", "replace")
        try:
            tree = ast.parse(source, filename=relative)
        except SyntaxError as error:
            raise ValueError(f"{relative} line {error.lineno}: syntax error: {error.msg}") from None
        problems += check_tree(tree, relative)
        queue += _imported_files(tree, workspace, relative)
    return seen, problems
