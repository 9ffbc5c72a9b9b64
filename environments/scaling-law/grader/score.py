"""Grade a scaling-law workspace: read its answer.json as data and score the chosen split of the
graded split's compute budget against the measured ground truth.

Runs as root in the grading sandbox, beside `answer_rules.py`, `ground_truth.json` and
`rdbench_grading.py`:

    python score.py --split validation|test --workspace /home/agent

No code of the agent's runs: answer.json is read (rdbench_grading.read_workspace_file: never
through a symlink, never more than a few kilobytes) and checked with this grader's own copy of
the rules (`answer_rules.py`, the workspace's check_answer.py), whatever the workspace's copy
says. For the entry
of the graded split:

    raw = (L(width) - L_best) / L_best + |ln(predicted_loss / L(width))|      (lower is better)

where L(width) is the measured held-out loss (mean over seeds) of the grid width trained for
round(C / N(width)) steps at the split's budget C, and L_best the lowest such loss on the grid.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from answer_rules import BUDGETS, MAX_ANSWER_BYTES, AnswerError, parse_entry
from rdbench_grading import emit, grade_main, read_workspace_file, shown

HERE = os.path.dirname(os.path.abspath(__file__))


def load_ground_truth(split: str) -> dict[str, Any]:
    """The measured losses of every grid width at `split`'s budget."""
    with open(os.path.join(HERE, "ground_truth.json"), encoding="utf-8") as handle:
        truth = json.load(handle)["budgets"][split]
    if float(truth["compute"]) != BUDGETS[split]:
        raise RuntimeError(f"ground_truth.json's {split} budget is not {BUDGETS[split]}")
    return truth


def grade(split: str, workspace: str) -> None:
    """Score answer.json's entry for `split` and emit the verdict."""
    truth = load_ground_truth(split)
    answer = read_workspace_file(workspace, "answer.json", MAX_ANSWER_BYTES)
    try:
        width, steps, predicted = parse_entry(answer, split)
    except AnswerError as error:
        emit(None, valid=False, message=str(error), details={"split": split})
    loss = float(truth["runs"][str(width)]["loss"])
    best = float(truth["best_loss"])
    regret = (loss - best) / best
    error = abs(math.log(predicted / loss))
    raw = regret + error
    details = {
        "split": split,
        "compute": BUDGETS[split],
        "width": width,
        "steps": steps,
        "predicted_loss": predicted,
        "true_loss": loss,
        "best_width": truth["best_width"],
        "best_loss": best,
        "regret": regret,
        "prediction_error": error,
    }
    # only the score, rounded: regret and error apart would give the hidden losses away
    message = (
        f"{split} budget {BUDGETS[split]:.3g} parameter-steps: score {shown(raw)} (lower is "
        f"better) = regret (how much higher width {width}'s loss is than the best grid "
        f"width's at this budget) + prediction error (|ln(predicted / measured loss)|)"
    )
    emit(raw, valid=True, message=message, details=details)


if __name__ == "__main__":
    grade_main(grade)
