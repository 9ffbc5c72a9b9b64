"""The tabular-credit task: its data generator (on the host), its anchors and its grader
(in the real grading sandbox, as every episode is graded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "tabular-credit"

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    """The task's grader/generate.py, imported by path."""
    pytest.importorskip("numpy")
    return load_module(TASK / "grader" / "generate.py", "tabular_credit_generate")


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The [scoring] table of the task's task.toml."""
    return task_scoring(TASK)


def test_generate_is_deterministic(generate: ModuleType) -> None:
    for split in ("train", "validation", "test"):
        first, second = generate.make_split(split), generate.make_split(split)
        assert generate.to_csv(*first) == generate.to_csv(*second)


def test_committed_train_csv_is_what_generate_writes(generate: ModuleType, tmp_path: Path) -> None:
    written = Path(generate.write_public(str(tmp_path)))
    committed = TASK / "workspace" / "data" / "train.csv"
    assert written.read_bytes() == committed.read_bytes(), (
        "workspace/data/train.csv is stale: run "
        "`python environments/tabular-credit/grader/generate.py --write-public "
        "environments/tabular-credit/workspace/data`"
    )
    assert committed.stat().st_size < 1_500_000


def test_splits_are_different_rows(generate: ModuleType) -> None:
    ids = {split: set(generate.make_split(split)[0]["id"]) for split in generate.SPLITS}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]


def test_leaky_column_follows_the_label_only_in_the_public_split(generate: ModuleType) -> None:
    import numpy as np

    def agreement(split: str) -> float:
        cols, label = generate.make_split(split)
        says_default = np.isin(cols["last_contact_code"], generate.LEAK_CODES[1])
        return float(np.mean(says_default == label.astype(bool)))

    assert agreement("train") > 0.85
    assert abs(agreement("validation") - 0.5) < 0.05
    assert abs(agreement("test") - 0.5) < 0.05


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Grade:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


def _script(body: str) -> str:
    """A train.py that reads the grader's arguments and then runs `body`."""
    head = (
        "import sys\n"
        "import pandas as pd\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "features = pd.read_csv(args['--predict'])\n"
    )
    return head + body + "\n"


@pytest.mark.slow
@pytest.mark.docker
def test_reference_beats_start_by_a_clear_margin(grade: Grade) -> None:
    assert grade(solution=True)["raw_score"] - grade()["raw_score"] >= 0.05


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "pd.DataFrame({'row': features['id'], 'p': 0.5}).to_csv(args['--out'], index=False)",
            "exactly the columns id,probability",
            id="wrong-columns",
        ),
        pytest.param(
            "raise RuntimeError('deliberate crash in train.py')",
            "deliberate crash in train.py",
            id="crash",
        ),
        pytest.param(
            "pd.DataFrame({'id': features['id'], 'probability': 1.5}).to_csv(args['--out'], "
            "index=False)",
            "outside [0, 1]",
            id="probability-above-one",
        ),
        pytest.param(
            "pd.DataFrame({'id': features['id'][1:], 'probability': 0.5}).to_csv(args['--out'], "
            "index=False)",
            "1 ids of the features file are not predicted",
            id="missing-id",
        ),
    ],
)
def test_broken_submission_is_invalid_with_a_reason(grade: Grade, body: str, expected: str) -> None:
    verdict = grade(split="validation", files={"train.py": _script(body)})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert expected in verdict["message"]


@pytest.mark.slow
@pytest.mark.docker
def test_predictions_left_in_the_workspace_are_ignored(grade: Grade) -> None:
    stale = "id,probability\n" + "".join(f"{i},0.5\n" for i in range(1, 10))
    verdict = grade(
        split="validation",
        files={"train.py": _script("pass"), "predictions.csv": stale, "score.json": '{"auc": 1}'},
    )
    assert verdict["valid"] is False
    assert "wrote no file" in verdict["message"]


@pytest.mark.slow
@pytest.mark.docker
def test_model_of_the_leaky_column_alone_scores_below_the_start(
    grade: Grade, scoring: dict[str, Any]
) -> None:
    body = (
        "train = pd.read_csv('data/train.csv')\n"
        "rate = train.groupby('last_contact_code')['target'].mean()\n"
        "probability = features['last_contact_code'].map(rate).fillna(train['target'].mean())\n"
        "pd.DataFrame({'id': features['id'], 'probability': probability})"
        ".to_csv(args['--out'], index=False)"
    )
    verdict = grade(files={"train.py": _script(body)})
    assert verdict["valid"], verdict["message"]
    assert verdict["raw_score"] < scoring.start - 0.1


@pytest.mark.slow
@pytest.mark.docker
def test_score_tool_does_not_reveal_a_validation_label(
    generate: ModuleType, tmp_path: Path, sandbox_image: str
) -> None:
    """Predicting 1 for one row and 0 elsewhere gives an AUC of exactly 0.5 + 0.5/P when the row
    is positive and 0.5 - 0.5/N when it is negative: at full precision the `score` tool would
    tell one hidden label per call. What it shows is rounded, so both read the same."""
    from rdbench.env import RDEnv
    from rdbench.task import load_task
    from rdbench.transcript import Transcript, read_transcript

    cols, labels = generate.make_split("validation")
    ids = [int(cols["id"][labels == label][0]) for label in (1, 0)]
    transcript = Transcript(tmp_path)
    env = RDEnv(load_task(TASK), transcript=transcript)
    shown = []
    try:
        env.reset()
        for row in ids:
            body = (
                f"probability = (features['id'] == {row}).astype(float)\n"
                "pd.DataFrame({'id': features['id'], 'probability': probability})"
                ".to_csv(args['--out'], index=False)"
            )
            write = {"path": "train.py", "content": _script(body)}
            env.step({"tool": "write_file", "input": write})
            shown.append(env.step({"tool": "score"})[0])
    finally:
        env.close()
        transcript.close()
    raw = [event["raw_score"] for event in read_transcript(tmp_path) if event["type"] == "score"]
    assert raw[0] > 0.5 > raw[1]  # the attack works on the full-precision score (recorded)
    assert shown[0] == shown[1], shown
    assert shown[0].startswith("Validation score: 0.500 (ROC AUC on the validation split: 0.500)")
