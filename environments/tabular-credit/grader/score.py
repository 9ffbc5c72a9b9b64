"""Grade a tabular-credit workspace: run its train.py on a hidden split, score ROC AUC.

Runs as root in the grading sandbox, beside `generate.py` and `rdbench_grading.py`:

    python score.py --split validation|test --workspace /home/agent

The split's features go to a fresh directory the agent user may read; its labels stay in this
process. The agent's `train.py` runs there as the agent user, and only the predictions file it
writes in that run is read: nothing already in the workspace is trusted.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pandas as pd
from generate import make_split, to_csv
from rdbench_grading import emit, grade_main, make_agent_dir, read_agent_file, run_as_agent, shown
from sklearn.metrics import roc_auc_score

TRAIN_TIMEOUT_S = 300
MAX_PREDICTIONS_BYTES = 50_000_000
COLUMNS = ["id", "probability"]


def check_predictions(data: bytes, ids: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Probabilities in the order of `ids`, or None and a message saying what is wrong."""
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except Exception as error:  # any parse failure is the submission's fault
        return None, f"could not read the predictions as CSV ({type(error).__name__})"
    if sorted(str(c) for c in frame.columns) != COLUMNS:
        found = ",".join(str(c) for c in frame.columns[:5])[:200]
        return None, f"predictions must have exactly the columns id,probability; found: {found}"
    id_values = pd.to_numeric(frame["id"], errors="coerce")
    if id_values.isna().any() or (id_values != id_values.round()).any():
        return None, "the id column must hold the integer ids of the features file"
    frame["id"] = id_values.astype(np.int64)
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        return None, f"{len(duplicated)} duplicate ids, e.g. {int(duplicated.iloc[0])}"
    missing = np.setdiff1d(ids, frame["id"].to_numpy())
    if len(missing):
        return None, f"{len(missing)} ids of the features file are not predicted, e.g. {missing[0]}"
    extra = np.setdiff1d(frame["id"].to_numpy(), ids)
    if len(extra):
        return None, f"{len(extra)} predicted ids are not in the features file, e.g. {extra[0]}"
    probability = pd.to_numeric(frame["probability"], errors="coerce")
    if probability.isna().any():
        return None, f"{int(probability.isna().sum())} probabilities are missing or not numbers"
    outside = (probability < 0) | (probability > 1)
    if outside.any():
        return None, f"{int(outside.sum())} probabilities are outside [0, 1]"
    by_id = pd.Series(probability.to_numpy(dtype=float), index=frame["id"].to_numpy())
    return by_id.loc[ids].to_numpy(), ""


def grade(split: str, workspace: str, scratch: str) -> None:
    """Run the agent's train.py on `split` inside `scratch` and emit the verdict."""
    if not os.path.isfile(os.path.join(workspace, "train.py")):
        emit(None, valid=False, message="there is no train.py in the workspace")
    cols, labels = make_split(split)
    io_dir = make_agent_dir(os.path.join(scratch, "io"))
    features_path = os.path.join(io_dir, "features.csv")
    predictions_path = os.path.join(io_dir, "predictions.csv")
    with open(features_path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(to_csv(cols))
    os.chmod(features_path, 0o644)
    run = run_as_agent(
        [sys.executable, "train.py", "--predict", features_path, "--out", predictions_path],
        cwd=workspace,
        timeout=TRAIN_TIMEOUT_S,
    )
    details = {"split": split, "n_rows": len(labels), "elapsed_s": round(run.elapsed_s, 2)}
    if not run.ok:
        details.update(returncode=run.returncode, timed_out=run.timed_out)
        emit(None, valid=False, message=f"train.py failed: {run.tail()}", details=details)
    data = read_agent_file(predictions_path, MAX_PREDICTIONS_BYTES,
                           missing="train.py exited 0 but wrote no file at the --out path")
    probability, problem = check_predictions(data, cols["id"])
    if probability is None:
        emit(None, valid=False, message=problem, details=details)
    auc = float(roc_auc_score(labels, probability))
    emit(auc, valid=True, message=f"ROC AUC on the {split} split: {shown(auc)}", details=details)



if __name__ == "__main__":
    grade_main(grade, scratch="tabular-credit-grade")
