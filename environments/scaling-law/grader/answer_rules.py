"""Check answer.json against the rules the grader applies, without scoring it.

    python check_answer.py [answer.json]

For each budget it checks the entry's keys and types, that the width is on the grid, and that
width x steps spends the budget (within 1%); it prints what it found and exits 1 on a problem.
The grader applies its own copy of these rules: editing this file changes nothing but what you
see here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256)
BUDGETS = {"validation": 1e7, "test": 1e8}  # parameter-steps: N(width) x steps
D_IN = 8
STEPS_TOLERANCE = 0.01  # N(width) x steps may differ from the budget by this fraction
MAX_ANSWER_BYTES = 10_000
MAX_STEPS = 10**12
ENTRY_KEYS = ("predicted_loss", "steps", "width")


class AnswerError(ValueError):
    """answer.json is missing or malformed; the message says what to fix."""


def n_params(width: int) -> int:
    """The parameter count of the model of width `width` (8 -> W -> W -> 1)."""
    return (D_IN + 1) * width + (width + 1) * width + (width + 1)


def read_answer(path: str) -> bytes:
    """The bytes of answer.json, for this check of the agent's own (the grader reads it with
    rdbench_grading.read_workspace_file: no link followed, a regular file, at most
    MAX_ANSWER_BYTES); AnswerError if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise AnswerError(f"could not read {path} ({error.strerror})") from None


def _shown(value: Any) -> str:
    """`value` as the answer wrote it, cut short."""
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> None:
    raise AnswerError(f"answer.json holds {name}, which is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise AnswerError(f"answer.json repeats the key(s) {duplicated}")
    return dict(pairs)


def parse_entry(data: bytes, split: str) -> tuple[int, int, float]:
    """The (width, steps, predicted_loss) answered for `split`, checked strictly."""
    try:
        answer = json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise AnswerError("answer.json is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        where = f"{error.msg}, line {error.lineno}"
        raise AnswerError(f"answer.json is not valid JSON ({where})") from None
    if not isinstance(answer, dict):
        raise AnswerError('answer.json must be an object: {"validation": {...}, "test": {...}}')
    unknown = sorted(set(answer) - set(BUDGETS))
    if unknown:
        raise AnswerError(
            f"answer.json has unknown top-level keys {_shown(unknown)}; allowed: validation, test"
        )
    if split not in answer:
        raise AnswerError(f'answer.json has no "{split}" entry')
    entry = answer[split]
    if not isinstance(entry, dict) or sorted(entry) != sorted(ENTRY_KEYS):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise AnswerError(
            f'answer.json["{split}"] must be an object with exactly the keys width, steps, '
            f"predicted_loss; found {_shown(found)}"
        )
    width, steps, loss = entry["width"], entry["steps"], entry["predicted_loss"]
    if type(width) is not int or width not in GRID:
        raise AnswerError(
            f"{split}: width must be an integer on the grid {list(GRID)}, got {_shown(width)}"
        )
    if type(steps) is not int or not 1 <= steps <= MAX_STEPS:
        raise AnswerError(f"{split}: steps must be a positive integer, got {_shown(steps)}")
    budget = BUDGETS[split]
    used = n_params(width) * steps
    if abs(used - budget) > STEPS_TOLERANCE * budget:
        expected = round(budget / n_params(width))
        raise AnswerError(
            f"{split}: width {width} (N = {n_params(width)}) x {steps} steps is {used:.4g} "
            f"parameter-steps, not the budget {budget:.4g} (within 1%); expected about "
            f"{expected} steps"
        )
    if type(loss) not in (int, float) or not 0 < loss < 10:  # NaN fails the comparison
        raise AnswerError(
            f"{split}: predicted_loss must be a number in (0, 10), got {_shown(loss)}"
        )
    return width, steps, float(loss)


def main() -> None:
    """Command line: check every entry of the answer file."""
    path = sys.argv[1] if len(sys.argv) > 1 else "answer.json"
    problems = 0
    for split in BUDGETS:
        try:
            width, steps, loss = parse_entry(read_answer(path), split)
        except AnswerError as error:
            print(f"{split}: PROBLEM: {error}")
            problems += 1
            continue
        print(f"{split} (budget {BUDGETS[split]:.3g}): width {width}, {steps} steps, "
              f"predicted loss {loss:.5f}: ok")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
