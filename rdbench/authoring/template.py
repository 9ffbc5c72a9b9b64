"""`rdbench task new ID`: a skeleton task folder that already works end to end.

The skeleton's agent squares integers: `predict.py` maps each hidden input to an answer, the
grader runs it as the agent user on the split's inputs (made from a seed the agent never sees)
and scores the share of right answers. The starting `predict.py` squares only the even
numbers (its score depends on the split), the reference squares them all (1.0). It passes
`rdbench task check` and the generic suite as written; an author replaces the problem, keeps
the shape, and calibrates (docs/tasks.md).
"""

from __future__ import annotations

import random
from pathlib import Path

from rdbench.task import TASK_ID_PATTERN, TaskSpecError

TASK_TOML = '''\
id = "{id}"
version = "0.1.0"
title = "Square the hidden numbers"
summary = "A skeleton task: predict.py squares the integers it is given; scored on hidden inputs."

[budget]
steps = 30          # agent tool calls
time_s = 1800       # working time, seconds

[sandbox]
cpus = 1.0
memory_mb = 1024
pids = 128
exec_timeout_s = 60

[scoring]
metric = "accuracy"
direction = "higher"        # "higher" or "lower" is better
start = {start:<20}# raw test score of the untouched workspace (rdbench task calibrate {id} --write)
reference = 1.0             # raw test score of workspace + solution/ laid over it
timeout_s = 120             # whole grading run
'''

INSTRUCTIONS = '''\
# Square the hidden numbers

`predict.py` in your home directory (`/home/agent`) reads integers, one a line, from the file
named by `--inputs` and must write one answer a line, in the same order, to the file named by
`--out`. The right answer to `x` is `x * x`. The starting `predict.py` gets only some of them
right. Make it right for every input.

You are scored on hidden inputs: the share of lines answered right. The `score` tool grades
your `predict.py` on a validation set of inputs; the final score uses another, hidden set.
Only what `predict.py` writes during grading counts; files left in your workspace are ignored.
'''

PREDICT_START = '''\
"""Answer every input: one integer in, one integer out (the starting solution)."""

import argparse


def answer(x: int) -> int:
    """The answer to `x`."""
    return x * x if x % 2 == 0 else x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.inputs, encoding="utf-8") as handle:
        numbers = [int(line) for line in handle if line.strip()]
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.writelines(f"{answer(x)}\\n" for x in numbers)


if __name__ == "__main__":
    main()
'''

PREDICT_REFERENCE = PREDICT_START.replace(
    "return x * x if x % 2 == 0 else x", "return x * x"
).replace("(the starting solution)", "(the reference solution)")

SCORE_PY = '''\
"""Grade a {id} workspace: run its predict.py on a split's hidden inputs, score the share of
right answers.

Runs as root in the grading sandbox, beside `rdbench_grading.py` (the grading kit):

    python score.py --split validation|test --workspace /home/agent

The inputs are made here from a seed per split (never in the workspace); the agent's
predict.py runs as the agent user in a scratch folder it may write, and only the file it
writes in that run is read, through the kit's safe read (no links, no FIFOs, a size cap).
"""

from __future__ import annotations

import os
import random
import stat
import sys

from rdbench_grading import emit, grade_main, make_agent_dir, read_agent_file, run_as_agent, shown

SEEDS = {{"validation": 1001, "test": 2002}}  # hidden: the agent never sees these inputs
COUNT = 200
RUN_TIMEOUT_S = 30
MAX_ANSWER_BYTES = 1_000_000


def hidden_inputs(split: str) -> list[int]:
    """The split's inputs: fixed by its seed, different between splits."""
    rng = random.Random(SEEDS[split])
    return [rng.randrange(2, 10_000) for _ in range(COUNT)]


def grade(split: str, workspace: str, scratch: str) -> None:
    """Run predict.py on `split` inside `scratch` and emit the verdict."""
    entry = os.path.join(workspace, "predict.py")
    try:
        mode = os.lstat(entry).st_mode
    except OSError:
        emit(None, valid=False, message="there is no predict.py in the workspace")
    if not stat.S_ISREG(mode):
        emit(None, valid=False, message="predict.py must be a regular file (not a link or FIFO)")
    numbers = hidden_inputs(split)
    io_dir = make_agent_dir(os.path.join(scratch, "io"))
    inputs, out = os.path.join(io_dir, "inputs.txt"), os.path.join(io_dir, "answers.txt")
    with open(inputs, "w", encoding="utf-8") as handle:
        handle.writelines(f"{{x}}\\n" for x in numbers)
    os.chmod(inputs, 0o644)
    run = run_as_agent(
        [sys.executable, "predict.py", "--inputs", inputs, "--out", out],
        cwd=workspace, timeout=RUN_TIMEOUT_S,
    )
    details = {{"split": split, "n_inputs": len(numbers), "elapsed_s": round(run.elapsed_s, 2)}}
    if not run.ok:
        emit(None, valid=False, message=f"predict.py failed: {{run.tail()}}", details=details)
    try:  # a link, a FIFO, a missing or too large file: grade_main makes it an invalid verdict
        lines = read_agent_file(out, MAX_ANSWER_BYTES).decode("utf-8").split()
    except UnicodeDecodeError:
        emit(None, valid=False, message="the answers are not UTF-8 text", details=details)
    if len(lines) != len(numbers):
        message = f"expected {{len(numbers)}} answers, one a line; got {{len(lines)}}"
        emit(None, valid=False, message=message, details=details)
    right = sum(line == str(x * x) for line, x in zip(lines, numbers))
    accuracy = right / len(numbers)
    emit(accuracy, valid=True, message=f"accuracy on the {{split}} split: {{shown(accuracy)}}",
         details=details)


if __name__ == "__main__":
    grade_main(grade, scratch="{id}-grade")  # the arguments, a scratch folder, the verdict
'''

TEST_PY = '''\
"""{id}'s own red-team tests: what the generic suite (tests/test_tasks_generic.py) cannot
know about this task. Run with `rdbench task test {id}`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import WorkspaceGrader

TASK = Path(__file__).resolve().parents[1]


@pytest.mark.bwrap
def test_answers_left_in_the_workspace_are_ignored(tmp_path: Path) -> None:
    grade = WorkspaceGrader(TASK, tmp_path, backend="bwrap")
    stale = "".join(f"{{i}}\\n" for i in range(200))
    verdict = grade(split="validation", files={{"predict.py": "pass\\n", "answers.txt": stale}})
    assert verdict["valid"] is False
    assert "answers.txt was not written" in verdict["message"]
'''


TEST_SEED, COUNT = 2002, 200  # the grader's test split (SEEDS["test"], COUNT in SCORE_PY)


def start_accuracy() -> float:
    """The starting predict.py's raw test score: the share of even numbers among the test
    split's inputs (it squares only those), made the way the grader makes them."""
    rng = random.Random(TEST_SEED)
    numbers = [rng.randrange(2, 10_000) for _ in range(COUNT)]
    return sum(x % 2 == 0 for x in numbers) / COUNT


def default_destination() -> Path:
    """Where `rdbench task new` makes a task: ./environments if it exists, else the current
    folder."""
    here = Path.cwd()
    return here / "environments" if (here / "environments").is_dir() else here


def new_task(task_id: str, into: Path | None = None) -> Path:
    """Make the skeleton task `task_id` in `into/<task_id>` and return its folder.

    TaskSpecError when the id is not a valid task id or the folder already exists."""
    if not TASK_ID_PATTERN.match(task_id):
        raise TaskSpecError(
            f"{task_id!r} is not a task id: use lower-case letters, digits and dashes, starting "
            "with a letter (e.g. my-task)"
        )
    root = (into or default_destination()) / task_id
    if root.exists():
        raise TaskSpecError(f"{root} already exists; choose another id or --into folder")
    files = {
        "task.toml": TASK_TOML.format(id=task_id, start=start_accuracy()),
        "instructions.md": INSTRUCTIONS,
        "workspace/predict.py": PREDICT_START,
        "solution/predict.py": PREDICT_REFERENCE,
        "grader/score.py": SCORE_PY.format(id=task_id),
        "tests/test_" + task_id.replace("-", "_") + ".py": TEST_PY.format(id=task_id),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
