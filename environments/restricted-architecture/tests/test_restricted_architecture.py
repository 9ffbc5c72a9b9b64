"""The restricted-architecture task: its chain, corpus and static checker (on the host), its
anchors and its grader (in the real grading sandbox, as every episode is graded).

The cheats are models: each reuses the starting bigram's weights (`table.weight`), so no torch
is needed on the host to build them. The unit tests of the exported-graph checks (program.py)
export small models on the host: they need torch there and skip without it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "restricted-architecture"

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


def _load(name: str, path: Path | None = None) -> ModuleType:
    return load_module(path or TASK / "grader" / f"{name}.py", f"restricted_architecture_{name}")


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    """The task's grader/generate.py, imported by path."""
    pytest.importorskip("numpy")
    return _load("generate")


@pytest.fixture(scope="module")
def restrictions() -> ModuleType:
    """The grader's restrictions.py (standard library only)."""
    return _load("restrictions")


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The task's [scoring] table as the framework reads it."""
    return task_scoring(TASK)


def _model(forward: str, head: str = "") -> str:
    """A model.py with the starting bigram's weights and `forward` as its forward body."""
    return (
        "import torch\nfrom torch import nn\n" + head + "\n\n"
        "class Bigram(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.table = nn.Embedding(32, 32)\n\n"
        "    def forward(self, tokens):\n"
        + "".join(f"        {line}\n" for line in forward.strip().splitlines())
        + "\n\ndef build_model():\n    return Bigram()\n"
    )


# --- the chain, the corpus and the static check, on the host --------------------------------


def test_generate_is_deterministic(generate: ModuleType) -> None:
    import numpy as np

    chain = generate.make_chain()
    assert np.array_equal(generate.sample(chain, "test"), generate.sample(chain, "test"))


def test_committed_corpus_is_what_generate_writes(generate: ModuleType, tmp_path: Path) -> None:
    written = Path(generate.write_public(str(tmp_path)))
    committed = TASK / "workspace" / "data" / "corpus.npy"
    assert written.read_bytes() == committed.read_bytes(), (
        "workspace/data/corpus.npy is stale: run `python environments/restricted-architecture/"
        "grader/generate.py --write-public environments/restricted-architecture/workspace/data`"
    )
    assert committed.stat().st_size < 1_100_000


def test_splits_are_different_corpora(generate: ModuleType) -> None:
    chain = generate.make_chain()
    validation, test = generate.sample(chain, "validation"), generate.sample(chain, "test")
    public = generate.sample(chain, "public")
    assert (validation != test).mean() > 0.5
    assert (public[: len(test)] != test).mean() > 0.5


def test_stated_entropy_rate_is_the_process_floor(generate: ModuleType) -> None:
    """H is stated where the agent reads it, and it is the floor: the expected entropy of the
    process's next-token distribution (a fresh, smaller Monte Carlo estimate agrees with the
    stored one) and the cross-entropy of the process itself on a hidden corpus."""
    import numpy as np

    chain = generate.make_chain()
    rate = chain.entropy_rate
    assert f"H = {rate:.4f} nats/token" in (TASK / "instructions.md").read_text(encoding="utf-8")
    for folder in ("workspace", "solution"):
        assert f"ENTROPY_RATE = {rate:.4f}" in (TASK / folder / "train.py").read_text()
    estimate, error = generate.estimate_entropy_rate(chain, rows=8192, chunk=4096)
    assert error < 0.002
    assert abs(estimate - rate) < 4 * error
    tokens = generate.sample(chain, "validation")
    probs = generate.conditionals(chain, tokens)[:, generate.WARMUP - 2 :]
    given = np.take_along_axis(probs, tokens[:, generate.WARMUP :, None].astype(np.int64), 2)
    assert abs(-np.log(given).mean() - rate) < 0.01


def test_probe_keeps_each_prefix_and_changes_what_follows(generate: ModuleType) -> None:
    import numpy as np

    chain = generate.make_chain()
    tokens = generate.sample(chain, "validation")
    probe, cut = generate.probe(chain, "validation", tokens)
    before = np.arange(tokens.shape[1])[None, :] < cut[:, None]
    assert (probe == tokens)[before].all()
    assert (probe != tokens)[~before].mean() > 0.5
    probs = generate.conditionals(chain, probe)
    given = np.take_along_axis(probs, probe[:, 2:, None].astype(np.int64), 2)
    assert (given > 0).all(), "the probe must be a sample of the process"


@pytest.mark.parametrize("folder", ["workspace", "solution"])
def test_start_and_reference_models_pass_the_static_check(
    restrictions: ModuleType, folder: str
) -> None:
    checked, problems = restrictions.check_sources(str(TASK / folder))
    assert checked == ["model.py"]
    assert problems == []


def test_static_check_finds_operators_and_names_in_imported_files(
    restrictions: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "model.py").write_text(_model("return helpers.smooth(self.table(tokens))",
                                              head="import helpers"))
    (tmp_path / "helpers.py").write_text(
        "import torch\n\ndef smooth(x):\n    y = x / 2\n    y **= 2\n"
        "    return torch.softmax(y, -1) + getattr(torch, 'exp')(y)\n"
    )
    (tmp_path / "train.py").write_text("import torch\nloss = torch.log_softmax\n")
    checked, problems = restrictions.check_sources(str(tmp_path))
    assert checked == ["model.py", "helpers.py"]  # train.py is not part of the model
    assert [str(p) for p in problems] == [
        "helpers.py line 4: operator '/'",
        "helpers.py line 5: operator '**'",
        "helpers.py line 6: forbidden name 'softmax'",
        "helpers.py line 6: forbidden name 'exp'",
    ]


def test_op_names_are_normalized_and_checked_against_the_allowed_list(
    restrictions: ModuleType,
) -> None:
    assert restrictions.op_name("aten::add_.Tensor") == "add"
    assert restrictions.op_name("aten::_softmax") == "_softmax"
    assert restrictions.op_name("myops::exp") == "myops::exp"
    names = ["aten::add.Tensor", "aten::mm", "aten::relu_", "aten::exp", "aten::_softmax",
             "aten::mean.dim", "aten::native_layer_norm", "myops::exp", "aten::pad"]
    refused = [n for n in names if restrictions.op_name(n) not in restrictions.ALLOWED_OPS]
    assert refused == ["aten::exp", "aten::_softmax", "aten::mean.dim",
                       "aten::native_layer_norm", "myops::exp"]


def test_reference_model_is_small() -> None:
    assert (TASK / "solution" / "model.pt").stat().st_size < 1_000_000
    ast.parse((TASK / "solution" / "model.py").read_text())


# --- the exported graph: audit, load, check and run (torch on the host, no sandbox) --------


@pytest.fixture(scope="module")
def program() -> ModuleType:
    """The grader's program.py (audits, loads, checks and runs exported models)."""
    pytest.importorskip("torch")
    _load("restrictions")
    sys.modules.setdefault("restrictions", sys.modules["restricted_architecture_restrictions"])
    return _load("program")


def _export(forward: str, head: str = "") -> Any:
    """The ExportedProgram of a bigram model.py whose forward body is `forward`, exported as
    the grader's harness does (eval, no_grad, int64 tokens [256, 128])."""
    import torch

    namespace: dict[str, Any] = {}
    exec(compile(_model(forward, head), "model.py", "exec"), namespace)  # test's own code
    model = namespace["build_model"]().eval()
    with torch.no_grad():
        return torch.export.export(model, (torch.randint(0, 32, (256, 128)),))


def _saved(exported: Any) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.export.save(exported, buffer)
    return buffer.getvalue()


ORDINARY_FORWARD = """
x = self.table(tokens)                                       # embedding
x = torch.nn.functional.linear(x, torch.ones(32, 32) * 0.01, torch.zeros(32))
x = torch.relu(x) + torch.clamp(x, -1.0, 1.0) - x * 0.5
conv = torch.nn.functional.conv1d(torch.nn.functional.pad(x.transpose(1, 2), (2, 0)),
                                  torch.ones(32, 32, 3) * 0.01)
x = x + conv.transpose(1, 2)
x = x + torch.cumsum(x, dim=1) * 0.01 + x[:, :, :1].expand(-1, -1, 32)
mask = torch.tril(torch.ones(128, 128))
x = x + torch.matmul(mask, x) * 0.001 + torch.bmm(x, torch.ones(256, 32, 32)) * 0.001
top = x.max(dim=-1, keepdim=True).values
x = torch.where(x > 0, x, torch.zeros_like(x)) + torch.maximum(x, top)
x = torch.cat([x[..., :16], x[..., 16:]], dim=-1).reshape(256, 128, 32)
x.add_(1.0).relu_()                                          # in place, on an intermediate
return x + torch.arange(32).float() * 0.0 + x.sum(dim=-1, keepdim=True) * 0.0
"""


def test_graph_of_ordinary_modules_passes_and_runs(program: ModuleType) -> None:
    """Embedding, linear, conv1d, relu, clamp, cumsum, matmul, bmm, tril masks, where, max,
    indexing, reshape, cat, pad and in-place updates of intermediates: all allowed, and the
    grader runs the saved graph."""
    import numpy as np

    loaded = program.checked_program(program.load_program(_saved(_export(ORDINARY_FORWARD))))
    tokens = np.random.default_rng(0).integers(0, 32, (300, 128))
    logits = program.run_program(loaded, tokens, 32)  # two calls, the second padded
    assert logits.shape == (300, 128, 32) and np.isfinite(logits).all()


@pytest.mark.parametrize(("forward", "named"), [
    ("return torch.exp(self.table(tokens))", "aten.exp.default"),
    ("return torch.softmax(self.table(tokens), -1)", "aten.softmax.int"),
    ("return self.table(tokens) / 2.0", "aten.div.Tensor"),
])
def test_graph_with_a_forbidden_op_is_refused_naming_it(
    program: ModuleType, forward: str, named: str
) -> None:
    exported = _export(forward)
    problems = program.graph_problems(exported)
    assert len(problems) == 1 and named in problems[0] and "ALLOWED_OPS" in problems[0]
    with pytest.raises(program.Refused, match=named.replace(".", r"\.")):
        program.load_program(_saved(exported))  # refused before torch even loads it


def test_higher_order_op_is_refused(program: ModuleType) -> None:
    exported = _export("x = self.table(tokens)\n"
                       "return torch.cond(x.sum() > 0, lambda y: y * 2.0, lambda y: y, (x,))")
    problems = program.graph_problems(exported)
    assert any("higher_order.cond" in p and "higher-order operator" in p for p in problems)
    with pytest.raises(program.Refused, match=r"higher_order\.cond|subgraph"):
        program.load_program(_saved(exported))


def test_graph_that_carries_state_between_calls_is_refused(program: ModuleType) -> None:
    """A buffer the forward pass updates would carry what one batch of the hidden corpus
    showed into the next (counting n-grams of the hidden corpus as it goes)."""
    import torch

    model = torch.nn.Module()
    model.table = torch.nn.Embedding(32, 32)
    model.register_buffer("seen", torch.zeros(32))

    def forward(tokens: Any) -> Any:
        logits = model.table(tokens) + model.seen
        model.seen.add_(tokens.sum())
        return logits

    model.forward = forward  # type: ignore[method-assign]
    with torch.no_grad():
        exported = torch.export.export(model.eval(), (torch.randint(0, 32, (256, 128)),))
    assert program.graph_problems(exported) == []  # as exported, the update is in place
    with pytest.raises(program.Refused, match="may not update its buffers"):
        program.checked_program(exported)


def test_workspace_checker_finds_the_same_forbidden_op(program: ModuleType) -> None:
    checker = _load("checker", TASK / "workspace" / "check_restrictions.py")
    exported = _export("return getattr(torch, 'e' + 'xp')(self.table(tokens))")
    assert any("aten.exp.default" in p for p in checker.graph_problems(exported))
    assert checker.graph_problems(_export(ORDINARY_FORWARD)) == []


def _rewritten(data: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """The archive `data` with its files changed by `change` (name -> bytes, in place)."""
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    files = {info.filename: source.read(info.filename) for info in source.infolist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, content in files.items():
            target.writestr(name, content)
    return out.getvalue()


def _named(files: dict[str, bytes], suffix: str) -> str:
    return next(name for name in files if name.endswith(suffix))


class _Payload:
    """Unpickling this creates the marker file (what a crafted archive would do as root)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _pickled_weight(files: dict[str, bytes], marker: Path) -> None:
    import json
    import pickle

    name = _named(files, "model_weights_config.json")
    config = json.loads(files[name])
    config["config"]["table.weight"]["use_pickle"] = True
    files[name] = json.dumps(config).encode()
    files[_named(files, "data/weights/weight_0")] = pickle.dumps(_Payload(marker))


def _pickled_example_inputs(files: dict[str, bytes], marker: Path) -> None:
    import pickle

    files[_named(files, "data/sample_inputs/model.pt")] = pickle.dumps(_Payload(marker))


def _symbolic_expression(files: dict[str, bytes], marker: Path) -> None:
    import json

    name = _named(files, "models/model.json")
    program = json.loads(files[name])
    values = program["graph_module"]["graph"]["tensor_values"]
    values[next(iter(values))]["sizes"][0] = {"as_expr": {
        "expr_str": f"__import__('pathlib').Path('{marker}').touch()", "hint": {"as_int": 256}}}
    files[name] = json.dumps(program).encode()


def _guard_code(files: dict[str, bytes], marker: Path) -> None:
    import json

    name = _named(files, "models/model.json")
    program = json.loads(files[name])
    program["guards_code"] = [f"__import__('pathlib').Path('{marker}').touch() is None"]
    files[name] = json.dumps(program).encode()


@pytest.mark.parametrize("craft", [_pickled_weight, _pickled_example_inputs,
                                   _symbolic_expression, _guard_code])
def test_crafted_archive_with_a_payload_is_refused_without_running_it(
    program: ModuleType, tmp_path: Path, craft: Callable[[dict[str, bytes], Path], None]
) -> None:
    """torch.export.load would run each of these payloads (pickled weights and example inputs
    are unpickled without restriction, symbolic shapes go through sympy.sympify, guard code is
    compiled into the module); the grader's audit refuses the archive first."""
    marker = tmp_path / "payload-ran"
    data = _rewritten(_saved(_export("return self.table(tokens)")),
                      lambda files: craft(files, marker))
    with pytest.raises(program.Refused):
        program.load_program(data)
    assert not marker.exists()


def test_archive_with_extra_or_compiled_files_is_refused(program: ModuleType) -> None:
    base = _saved(_export("return self.table(tokens)"))

    def add(name: str) -> Callable[[dict[str, bytes]], None]:
        def change(files: dict[str, bytes]) -> None:
            root = next(iter(files)).split("/")[0]
            files[f"{root}/{name}"] = b"\x7fELF"
        return change

    for name in ("data/aotinductor/model/model.so", "extra/notes.txt",
                 "data/constants/custom_obj_0"):
        with pytest.raises(program.Refused, match="does not write"):
            program.load_program(_rewritten(base, add(name)))


def test_archive_holding_a_file_twice_is_refused(program: ModuleType) -> None:
    """Two readers of a zip file may pick different copies of a duplicated name (the audit's
    zipfile the last, torch's reader perhaps the first): such an archive is refused, and what
    torch loads is rebuilt from the audited bytes anyway."""
    import io
    import warnings
    import zipfile

    base = _saved(_export("return self.table(tokens)"))
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as target:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name
        for info in source.infolist():
            if info.filename.endswith("models/model.json"):
                target.writestr(info.filename, b'{"guards_code": ["payload"]}')
            target.writestr(info.filename, source.read(info.filename))
    with pytest.raises(program.Refused, match="twice"):
        program.load_program(out.getvalue())


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> WorkspaceGrader:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


def _invalid(verdict: Verdict, *expected: str) -> None:
    assert verdict["valid"] is False, verdict["message"]
    assert verdict["raw_score"] is None
    for text in expected:
        assert text in verdict["message"]


@pytest.mark.slow
@pytest.mark.docker
def test_forbidden_source_is_invalid_even_with_the_workspace_checker_edited(grade: Grade) -> None:
    """Static check, on model.py and the files it imports; the workspace's checker (and a
    restrictions.py of the agent's) are not what the grader uses."""
    verdict = grade(split="validation", files={
        "model.py": _model("return helpers.smooth(self.table(tokens))", head="import helpers"),
        "helpers.py": "import torch\n\ndef smooth(x):\n    return torch.sigmoid(x / 2)\n",
        "check_restrictions.py": "print('OK: the model passes the restriction checks')\n",
        "restrictions.py": "FORBIDDEN_NAMES = frozenset()\nALLOWED_OPS = frozenset()\n",
    })
    _invalid(verdict, "helpers.py line 4: operator '/'", "helpers.py line 4: forbidden name "
             "'sigmoid'")


@pytest.mark.slow
@pytest.mark.docker
def test_exp_hidden_behind_getattr_is_caught_in_the_exported_graph(grade: Grade) -> None:
    verdict = grade(split="validation", files={
        "model.py": _model("smooth = getattr(torch, 'e' + 'xp')\n"
                           "return smooth(self.table(tokens) * 0.5)"),
    })
    _invalid(verdict, "the model uses aten.exp", "not among the allowed operations")


@pytest.mark.slow
@pytest.mark.docker
def test_tampering_with_the_harness_output_or_startup_does_not_hide_ops(grade: Grade) -> None:
    """Startup hooks in the workspace (sitecustomize.py, usercustomize.py, a .pth file in the
    user site) and a model.py that patches json.dump and os.write at import so that a report
    would list no forbidden operation. There is no report any more: the harness runs `python
    -I` and only saves the exported graph, which the grader checks itself: aten.exp is found."""
    hide = (
        "import json, os\n"
        "_write = os.write\n"
        "os.write = lambda fd, data: _write(fd, bytes(data).replace(b'aten::exp', b'aten::add'))\n"
        "json.dump = lambda *a, **k: None\n"
    )
    site = ".local/lib/python3.11/site-packages/"
    verdict = grade(split="validation", files={
        "model.py": _model("return getattr(torch, 'e' + 'xp')(self.table(tokens) * 0.5)",
                           head=hide),
        "sitecustomize.py": hide,
        "usercustomize.py": hide,
        site + "usercustomize.py": hide,
        site + "hide.pth": "import usercustomize\n",
    })
    _invalid(verdict, "aten.exp")


@pytest.mark.slow
@pytest.mark.docker
def test_model_peeking_at_the_next_token_is_not_causal(grade: Grade) -> None:
    verdict = grade(split="validation", files={
        "model.py": _model("following = torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)\n"
                           "return self.table(tokens) + torch.eye(32)[following] * 8.0"),
    })
    _invalid(verdict, "the model is not causal")


@pytest.mark.slow
@pytest.mark.docker
def test_switching_off_the_dispatch_recorder_gains_nothing(grade: Grade) -> None:
    """Finding 2a of issue 10: model.py reaches torch.utils._python_dispatch through
    sys.modules with names built at run time (the static check sees none of them), sets
    `.active = False` on every mode of the dispatch stack, then computes a log-softmax with
    exp/log/div/softmax looked up with getattr. Nothing of that happens in the grader's
    process: the exported graph holds the forbidden operators and is refused."""
    forward = (
        "stack = getattr(sys.modules['torch.utils.' + '_py' + 'thon_dis' + 'patch'],\n"
        "                '_get_current_' + 'dis' + 'patch_mode_stack')()\n"
        "for mode in stack:\n"
        "    mode.active = False\n"
        "x = self.table(tokens)\n"
        "scores = getattr(torch, 'soft' + 'max')(x, -1)\n"
        "total = getattr(torch, 'e' + 'xp')(x).sum(-1, keepdim=True)\n"
        "return getattr(torch, 'lo' + 'g')(getattr(torch, 'di' + 'v')(scores * total, total))"
    )
    verdict = grade(split="validation", files={"model.py": _model(forward, head="import sys")})
    _invalid(verdict, "not among the allowed operations")
    assert any(f"aten.{op}" in verdict["message"] for op in ("exp", "log", "div", "softmax"))


@pytest.mark.slow
@pytest.mark.docker
def test_python_callbacks_through_apply_are_invalid(grade: Grade) -> None:
    """Finding 2b of issue 10: Tensor.apply_ with Python callables (math's exponential, a
    reciprocal, math's logarithm) computes a real log-softmax outside the dispatcher. A graph
    cannot hold Python callbacks: the export fails and the submission is invalid, saying so."""
    forward = (
        "x = self.table(tokens).clone()\n"
        "x.apply_(getattr(math, 'e' + 'xp'))\n"
        "total = x.sum(-1, keepdim=True).apply_(lambda v: 1.0 * pow_(v, -1))\n"
        "return (x * total).apply_(getattr(math, 'lo' + 'g'))"
    )
    head = "import math\n\ndef pow_(v, e):\n    return getattr(v, '__p' + 'ow__')(e)\n"
    verdict = grade(split="validation", files={"model.py": _model(forward, head=head)})
    _invalid(verdict, "exporting the model failed while exporting the model with torch.export",
             "no Python callbacks such as Tensor.apply_")


@pytest.mark.slow
@pytest.mark.docker
def test_python_control_flow_on_tensor_values_is_invalid(grade: Grade) -> None:
    forward = ("x = self.table(tokens)\n"
               "if x.sum() > 0:\n"
               "    return x * 2.0\n"
               "return x")
    verdict = grade(split="validation", files={"model.py": _model(forward)})
    _invalid(verdict, "exporting the model failed while exporting the model with torch.export",
             "data-dependent", "no Python control flow on tensor values")


@pytest.mark.slow
@pytest.mark.docker
def test_fake_results_and_files_written_at_export_change_nothing(grade: Grade) -> None:
    """The start's model with fake score, result and logits files in the workspace, and a
    model.py that writes fake results in the scratch places and its home at import. The
    grader reads nothing but the exported graph: it grades exactly as the start."""
    head = (
        "import os\n"
        "for folder in ('/tmp', '/var/tmp', '/dev/shm', os.path.expanduser('~')):\n"
        "    for name in ('logits-0.npy', 'logits-1.npy', 'invalid.txt', 'score.json'):\n"
        "        try:\n"
        "            open(os.path.join(folder, name), 'w').write('{\"raw_score\": -9}')\n"
        "        except OSError:\n"
        "            pass\n"
    )
    verdict = grade(files={
        "model.py": _model("return self.table(tokens)", head=head),
        "score.json": '{"raw_score": -9.0, "valid": true}',
        "result.json": '{"normalized_score": 1.0}',
        "logits.bin": b"\x00" * 1024,
    })
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == grade()["raw_score"]
    assert verdict["normalized_score"] < 0.01


@pytest.mark.slow
@pytest.mark.docker
def test_lingering_process_started_at_import_is_killed_and_changes_nothing(grade: Grade) -> None:
    """A detached (setsid) process started from model.py at import (through a name the static
    check cannot see) that burns CPU and tries to overwrite every file the grader might use:
    it dies with the export run, the grader runs the graph in its own root-only folder, and the
    start's model grades as the start."""
    head = (
        "import os\n"
        "getattr(os, 'sys' + 'tem')(\"setsid sh -c 'while :; do for f in /tmp/*/*/*; \"\n"
        "                           \"do echo x > $f; done; done' >/dev/null 2>&1 &\")\n"
    )
    verdict = grade(split="validation", files={
        "model.py": _model("return self.table(tokens)", head=head),
    })
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == grade(split="validation")["raw_score"]


TABLE_MODEL = '''import os
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


class Table(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(32, 32)
        with open(os.path.join(HERE, "table.bin"), "rb") as handle:
            raw = bytearray(handle.read())
        self.register_buffer("scores", torch.frombuffer(raw, dtype=torch.float32)
                             .reshape(33 * 33 * 33, 32), persistent=False)

    def forward(self, tokens):
        padded = torch.cat([torch.full_like(tokens[:, :2], 32), tokens], dim=1)
        index = (padded[:, :-2] * 33 + padded[:, 1:-1]) * 33 + padded[:, 2:]
        return self.scores[index]


def build_model():
    return Table()
'''


def _order3_table(corpus: Any, smoothing: float = 8.0) -> Any:
    """log P(next | last 3 tokens, 32 = before the start) counted on `corpus`, each order
    smoothed toward the one below with `smoothing` pseudo-counts: [33**3, 32] float32."""
    import numpy as np

    rows, length = corpus.shape
    padded = np.concatenate([np.full((rows, 3), 32), corpus.astype(np.int64)], axis=1)
    table = np.full((1, 32), 1 / 32)
    for order in (1, 2, 3):
        context = np.zeros(rows * (length - 1), dtype=np.int64)
        for j in range(4 - order, 4):
            context = context * 33 + padded[:, j : j + length - 1].ravel()
        counts = np.zeros((33**order, 32))
        np.add.at(counts, (context, corpus[:, 1:].ravel()), 1)
        lower = table[np.arange(33**order) % 33 ** (order - 1)]
        table = (counts + smoothing * lower) / (counts.sum(1, keepdims=True) + smoothing)
    return np.log(table).astype(np.float32)


@pytest.mark.slow
@pytest.mark.docker
def test_order3_count_table_scores_little(grade: Grade) -> None:
    """The attack of issue 10: a table of log-frequencies over the last 3 tokens, counted on
    the public corpus and looked up by index arithmetic (33**3 contexts, 32 = before the
    start). On an order-3 chain it was near the floor (normalized 1.33); the corpus now depends
    on what followed earlier occurrences of the current token, which no short table sees."""
    import numpy as np

    corpus = np.load(TASK / "workspace" / "data" / "corpus.npy")
    verdict = grade(files={"model.py": TABLE_MODEL, "table.bin": _order3_table(corpus).tobytes()})
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < 0.3
    assert verdict["raw_score"] < grade()["raw_score"] - 0.2  # it does learn more than the start
