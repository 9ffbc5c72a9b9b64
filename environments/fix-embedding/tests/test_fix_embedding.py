"""The fix-embedding task: its chain and corpus (on the host), its anchors and its grader (in the
real grading sandbox, as every episode is graded).

The grader runs no code of the agent's: it reads model.pt into its own copy of the architecture.
So the cheats that need agent code to run at grading (patching time, a lingering process, an
edited model.py or evaluate.py, a sitecustomize.py) are tested together as files the grader must
ignore, and the cheats on the one file it reads (model.pt) are tested one by one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "fix-embedding"
ANCHOR_TOLERANCE = 0.002  # the grading is deterministic: this only absorbs float differences
UNTOUCHED_RAW = 1.4385  # the corrupted model.pt on the test split (worse than the start anchor)

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    """The task's grader/generate.py, imported by path."""
    pytest.importorskip("numpy")
    return load_module(TASK / "grader" / "generate.py", "fix_embedding_generate")


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The task's [scoring] table as the framework reads it."""
    return task_scoring(TASK)


def test_generate_is_deterministic(generate: ModuleType) -> None:
    import numpy as np

    chain = generate.make_chain()
    assert np.array_equal(generate.sample(chain, "test"), generate.sample(chain, "test"))
    assert chain.entropy_rate == generate.make_chain().entropy_rate


def test_committed_corpus_is_what_generate_writes(generate: ModuleType, tmp_path: Path) -> None:
    written = Path(generate.write_public(str(tmp_path)))
    committed = TASK / "workspace" / "data" / "corpus.npy"
    assert written.read_bytes() == committed.read_bytes(), (
        "workspace/data/corpus.npy is stale: run `python environments/fix-embedding/grader/"
        "generate.py --write-public environments/fix-embedding/workspace/data`"
    )


def test_splits_are_different_corpora(generate: ModuleType) -> None:
    chain = generate.make_chain()
    corpora = {split: generate.sample(chain, split) for split in generate.SPLITS}
    for a in corpora:
        for b in corpora:
            if a < b:
                rows = min(len(corpora[a]), len(corpora[b]))
                assert (corpora[a][:rows, :64] != corpora[b][:rows, :64]).any(), (a, b)


def test_stated_entropy_rate_is_the_chains(generate: ModuleType) -> None:
    rate = generate.make_chain().entropy_rate
    assert f"H = {rate:.4f} nats/token" in (TASK / "instructions.md").read_text(encoding="utf-8")
    assert f"ENTROPY_RATE = {rate:.4f}" in (TASK / "workspace" / "evaluate.py").read_text()


def test_entropy_rate_matches_the_loss_of_the_true_chain(generate: ModuleType) -> None:
    import numpy as np

    chain = generate.make_chain()
    tokens = generate.sample(chain, "validation").astype(np.int64)
    state = tokens[:, :-2] * generate.VOCAB + tokens[:, 1:-1]
    loss = -np.log(chain.probs[state, tokens[:, 2:]]).mean()
    assert abs(loss - chain.entropy_rate) < 0.005


def test_reference_model_is_small() -> None:
    assert (TASK / "solution" / "model.pt").stat().st_size < 1_000_000


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> WorkspaceGrader:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


VARIANTS_SCRIPT = """
import torch
state = torch.load('model.pt', weights_only=True)
def save(name, obj):
    torch.save(obj, f'out/{name}.pt')
save('extra-key', {**state, 'extra.weight': state['out.bias']})
save('wrong-shape', {**state, 'embed.weight': state['embed.weight'][:32]})
save('nan', {**state, 'out.bias': state['out.bias'] * float('nan')})
save('float64', {k: v.double() for k, v in state.items()})
save('pickled-code', {'state': state, 'hook': print})
save('zeroed', {**state, 'embed.weight': state['embed.weight'] * 0})
save('doubled', {**state, 'embed.weight': state['embed.weight'] * 2})
"""


@pytest.fixture(scope="module")
def variants(sandbox_image: str) -> dict[str, bytes]:
    """Edited copies of the start's model.pt, made with torch in the sandbox image (the host's
    test environment has no torch), by name."""
    import tarfile

    from rdbench.sandbox import AGENT_HOME, SandboxConfig, make_sandbox

    sandbox = make_sandbox("docker", SandboxConfig())
    try:
        sandbox.write_file(f"{AGENT_HOME}/model.pt", (TASK / "workspace" / "model.pt").read_bytes())
        sandbox.write_file(f"{AGENT_HOME}/make.py", VARIANTS_SCRIPT)
        sandbox.write_file(f"{AGENT_HOME}/out/.keep", "")
        result = sandbox.exec(["python3", "make.py"], cwd=AGENT_HOME)
        assert result.returncode == 0, result.stderr
        archive = sandbox.get_dir(f"{AGENT_HOME}/out")
    finally:
        sandbox.close()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {
            Path(member.name).stem: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar
            if member.isfile() and member.name.endswith(".pt")
        }


@pytest.mark.slow
@pytest.mark.docker
def test_untouched_workspace_scores_below_the_start_anchor_and_normalizes_to_0(
    grade: Grade, scoring: Any
) -> None:
    verdict = grade()
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == pytest.approx(UNTOUCHED_RAW, abs=ANCHOR_TOLERANCE)
    assert verdict["raw_score"] > scoring.start  # lower is better: worse than the start
    assert verdict["normalized_score"] == 0.0
    assert verdict["message"].startswith("test split: cross-entropy")


@pytest.fixture(scope="module")
def retrained_from_scratch(sandbox_image: str) -> bytes:
    """The shortcut of issue 10 (finding 6): the shipped train.py run from scratch with its
    default arguments in the task's sandbox (2 CPUs), no repair at all; its trained.pt."""
    from rdbench.sandbox import AGENT_HOME, SandboxConfig, make_sandbox
    from rdbench.starting_workspace import starting_workspace
    from rdbench.task import load_task

    sandbox = make_sandbox("docker", SandboxConfig(cpus=2.0, exec_timeout_s=1800))
    try:
        with starting_workspace(load_task(TASK)) as start:  # with [workspace] from_grader
            sandbox.put_dir(str(start), AGENT_HOME)
        # One thread: the same arithmetic, without threads spinning on a busy machine.
        result = sandbox.exec(["python3", "train.py"], cwd=AGENT_HOME, timeout=1800,
                              env={"OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr
        return sandbox.read_file(f"{AGENT_HOME}/trained.pt")
    finally:
        sandbox.close()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1800)  # training takes minutes on 2 busy cores
def test_retraining_from_scratch_with_the_shipped_train_py_scores_under_0_3(
    grade: Grade, scoring: Any, retrained_from_scratch: bytes
) -> None:
    """It scored 0.65 when the scale started at the corrupted model. The task measures the
    repair, so the start anchor is now this shortcut's score (the instructions say so): it
    normalizes to about 0. The tolerance on its raw score allows for another CPU's float
    rounding in training; the bound on its normalized score is the point."""
    verdict = grade(files={"model.pt": retrained_from_scratch})
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] < UNTOUCHED_RAW - 3  # far better than the corrupted model...
    assert verdict["raw_score"] == pytest.approx(scoring.start, abs=0.05)
    assert verdict["normalized_score"] < 0.3  # ...but it is the scale's 0: no credit for it


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("extra-key", "unexpected: ['extra.weight']"),
        ("wrong-shape", "embed.weight has shape (32, 8); expected (64, 8)"),
        ("nan", "out.bias holds NaN or infinite values"),
        ("float64", "has dtype torch.float64; expected torch.float32"),
        ("pickled-code", "could not be loaded with torch.load(weights_only=True)"),
    ],
)
def test_malformed_model_pt_is_invalid_with_a_reason(
    grade: Grade, variants: dict[str, bytes], variant: str, expected: str
) -> None:
    verdict = grade(split="validation", files={"model.pt": variants[variant]})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert expected in verdict["message"]


@pytest.mark.slow
@pytest.mark.docker
def test_files_the_grader_must_ignore_change_nothing(grade: Grade) -> None:
    """Cheats that only work if the grader trusted or ran something of the workspace besides
    model.pt: a fake score and result file, an edited model.py and evaluate.py that would score
    anything as perfect, a sitecustomize.py / usercustomize.py patching time and the loss, and a
    launcher that would leave a detached process overwriting model.pt. None of it runs; the
    start's model.pt is graded exactly as the start."""
    lingering = (
        "import subprocess\n"
        "subprocess.Popen(['setsid', 'sh', '-c', 'sleep 3; cp solution.pt model.pt'])\n"
    )
    patch = (
        "import time, torch.nn.functional as F\n"
        "time.time = time.perf_counter = time.monotonic = lambda: 0.0\n"
        "F.cross_entropy = lambda *a, **k: __import__('torch').tensor(1.2725)\n"
    )
    perfect = (TASK / "grader" / "model.py").read_text().replace(
        "return self.out(torch.relu(self.hidden(x)))", "return torch.zeros(len(x), VOCAB)"
    )
    decoys = {
        "score.json": '{"raw_score": -10, "valid": true}',
        "result.json": '{"normalized_score": 1.0}',
        "model.py": perfect,
        "evaluate.py": "print('held-out cross-entropy 1.2725')\n",
        "sitecustomize.py": patch,
        "usercustomize.py": patch,
        "launch.py": lingering,
        "solution.pt": (TASK / "solution" / "model.pt").read_bytes(),
    }
    verdict, start = grade(split="validation", files=decoys), grade(split="validation")
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] == start["raw_score"]


@pytest.mark.slow
@pytest.mark.docker
def test_rescaling_the_corrupted_embedding_earns_next_to_nothing(
    grade: Grade, variants: dict[str, bytes]
) -> None:
    """The nearest thing to hard-coding here: the architecture caps what any weights can do, and
    the trivial edits of the start (zeroing or doubling the whole embedding) stay near 0."""
    for name in ("zeroed", "doubled"):
        verdict = grade(files={"model.pt": variants[name]})
        assert verdict["valid"], verdict["message"]
        assert verdict["normalized_score"] < 0.1
