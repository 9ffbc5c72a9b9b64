"""The restricted-architecture task: its chain, corpus and static checker (on the host), its
anchors and its grader (in the real grading sandbox, as every episode is graded).

The cheats are models: each reuses the starting bigram's weights (`table.weight`), so no torch
is needed on the host to build them.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "environments" / "restricted-architecture"
ANCHOR_TOLERANCE = 0.002  # the grading is deterministic: this only absorbs float differences

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


def _load(name: str, path: Path | None = None) -> ModuleType:
    path = path or TASK / "grader" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"restricted_architecture_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
def scoring() -> Any:
    """The task's [scoring] table as the framework reads it."""
    from rdbench.task import load_task

    return load_task(TASK).scoring


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


def test_workspace_checker_has_the_graders_rules(restrictions: ModuleType) -> None:
    checker = _load("checker", TASK / "workspace" / "check_restrictions.py")
    assert checker.FORBIDDEN_NAMES == restrictions.FORBIDDEN_NAMES
    assert checker.ALLOWED_OPS == restrictions.ALLOWED_OPS
    assert checker.FORBIDDEN_OPERATORS == restrictions.FORBIDDEN_OPERATORS


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
    ops = ["add", "mm", "relu", "exp", "_softmax", "mean", "native_layer_norm", "myops::exp"]
    assert restrictions.disallowed_ops(ops) == sorted(
        ["_softmax", "exp", "mean", "myops::exp", "native_layer_norm"]
    )


def test_reference_model_is_small() -> None:
    assert (TASK / "solution" / "model.pt").stat().st_size < 1_000_000
    ast.parse((TASK / "solution" / "model.py").read_text())


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
def test_start_workspace_reproduces_the_start_anchor(grade: Grade, scoring: Any) -> None:
    verdict = grade()
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == pytest.approx(scoring.start, abs=ANCHOR_TOLERANCE)
    assert verdict["normalized_score"] == pytest.approx(0.0, abs=0.01)
    assert verdict["message"].startswith("test split: cross-entropy")


@pytest.mark.slow
@pytest.mark.docker
def test_reference_solution_reproduces_the_reference_anchor(grade: Grade, scoring: Any) -> None:
    verdict = grade(solution=True)
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == pytest.approx(scoring.reference, abs=ANCHOR_TOLERANCE)
    assert verdict["normalized_score"] >= 0.9


@pytest.mark.slow
@pytest.mark.docker
def test_validation_and_test_splits_score_differently(grade: Grade) -> None:
    """Compared on the loss: the reference reaches the floor (MIN_EXCESS) on both splits."""
    validation, test = grade(split="validation", solution=True), grade(solution=True)
    assert validation["valid"] and test["valid"]
    assert abs(validation["details"]["loss"] - test["details"]["loss"]) > 1e-3
    assert validation["message"].startswith("validation split")


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
def test_exp_hidden_behind_getattr_is_caught_at_run_time(grade: Grade) -> None:
    verdict = grade(split="validation", files={
        "model.py": _model("smooth = getattr(torch, 'e' + 'xp')\n"
                           "return smooth(self.table(tokens) * 0.5)"),
    })
    _invalid(verdict, "the forward pass used aten.exp", "not among the allowed operations")


@pytest.mark.slow
@pytest.mark.docker
def test_tampering_with_the_harness_output_or_startup_does_not_hide_ops(grade: Grade) -> None:
    """The nearest variant of patching the timing harness (there is no timing here): startup
    hooks in the workspace (sitecustomize.py, usercustomize.py, a .pth file in the user site)
    and a model.py that patches json.dump and os.write at import so the report would list no
    forbidden operation. The harness runs `python -I` with the workspace last on sys.path and
    writes through functions captured before the import: aten.exp is still found."""
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
def test_fake_results_and_state_saved_between_runs_change_nothing(grade: Grade) -> None:
    """The start's model with fake score, result and logits files in the workspace, and a
    model.py that writes files at import to see whether anything survives from the first run to
    the second (it would raise if so: the workspace is read-only and the temporary directories
    are wiped between the runs). It grades exactly as the start."""
    head = (
        "import os\n"
        "for marker in ('/tmp/marker', '/var/tmp/marker', '/dev/shm/marker'):\n"
        "    if os.path.exists(marker):\n"
        "        raise RuntimeError('a file survived from the first run: ' + marker)\n"
        "    open(marker, 'w').close()\n"
        "try:\n"
        "    open(os.path.expanduser('~/marker'), 'w').close()\n"
        "    raise RuntimeError('the workspace was writable during evaluation')\n"
        "except PermissionError:\n"
        "    pass\n"
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
def test_lingering_process_started_at_import_is_caught_and_killed(grade: Grade) -> None:
    """A detached (setsid) process started from model.py at import (through a name the static
    check cannot see) that burns CPU and tries to overwrite every logits file it finds: the
    harness sees another process of the agent user during the forward pass, the submission is
    invalid, and the process is killed with the run (the grading finishes normally)."""
    head = (
        "import os\n"
        "getattr(os, 'sys' + 'tem')(\"setsid sh -c 'while :; do for f in /tmp/*/*/logits.bin; \"\n"
        "                           \"do echo x > $f; done; done' >/dev/null 2>&1 &\")\n"
    )
    verdict = grade(split="validation", files={
        "model.py": _model("return self.table(tokens)", head=head),
    })
    _invalid(verdict, "the model's code started other processes")


@pytest.mark.slow
@pytest.mark.docker
def test_model_cannot_read_the_hidden_grader_files(grade: Grade) -> None:
    """The agent's code runs as the agent user: opening the grader's files (its generator, the
    chain's seed) fails, and the submission scores nothing."""
    verdict = grade(split="validation", files={
        "model.py": _model("return self.table(tokens)",
                           head="SECRET = open('/grader/generate.py').read()"),
    })
    _invalid(verdict, "PermissionError", "/grader/generate.py")


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
