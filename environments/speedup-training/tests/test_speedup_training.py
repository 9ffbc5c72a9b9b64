"""The speedup-training task: its copies of the original training agree, and its grader (in the
real grading sandbox, as every episode is graded) scores the start about 0, the reference
about 1, and every way of cheating we could think of 0 or invalid.

The score is a ratio of CPU times measured in the same grading run (the original's, its
epochs counted at the fastest one's, and the fastest of several runs of train.py interleaved
with it), so the anchors are checked the way the brief for timing tasks asks: the untouched
workspace normalizes below 0.2 and the reference to at least 0.9 (task.toml's reference is the
lower quartile of repeated gradings, idle and loaded, see the comment there).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import WorkspaceGrader, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "speedup-training"
START_SCRIPT = (TASK / "grader" / "original" / "train.py").read_text(encoding="utf-8")
SOLUTION_SCRIPT = (TASK / "solution" / "train.py").read_text(encoding="utf-8")
NULL_CEILING = 0.2  # the untouched workspace (or a cheat around it) normalizes below this
ORACLE_FLOOR = 0.9

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The [scoring] table of the task's task.toml."""
    return task_scoring(TASK)


def test_solution_trains_the_same_configuration_as_the_original() -> None:
    constants = ["N_TRAIN", "N_FEATURES", "HIDDEN", "TEACHER_HIDDEN", "NOISE", "EPOCHS", "BATCH",
                 "LR_MAX", "LR_MIN", "MOMENTUM", "WEIGHT_DECAY"]
    for name in constants:
        line = next(line for line in START_SCRIPT.splitlines() if line.startswith(f"{name} ="))
        assert line in SOLUTION_SCRIPT.splitlines(), f"solution/train.py differs on {name}"


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Grade:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


def _with_prelude(script: str, prelude: str) -> str:
    """`script` with `prelude` run first (right after its `from __future__` import)."""
    future = "from __future__ import annotations\n"
    assert future in script
    return script.replace(future, future + prelude, 1)


@pytest.mark.slow
@pytest.mark.docker
def test_untouched_workspace_scores_about_zero(grade: Grade, scoring: Scoring) -> None:
    verdict = grade()
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["distance"] == 0.0  # the same code trains the same model
    assert verdict["normalized_score"] < NULL_CEILING, verdict["details"]
    assert abs(verdict["raw_score"] - scoring.start) < NULL_CEILING * scoring.reference


@pytest.mark.slow
@pytest.mark.docker
def test_reference_solution_reaches_the_reference(grade: Grade) -> None:
    verdict = grade(solution=True)
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["distance"] < 1e-5
    assert verdict["normalized_score"] >= ORACLE_FLOOR, verdict["details"]
    assert verdict["details"]["original_cpu_s"] / verdict["details"]["agent_cpu_s"] >= 4


@pytest.mark.slow
@pytest.mark.docker
def test_validation_trains_on_another_seed_than_test(grade: Grade) -> None:
    validation, test = grade(split="validation", solution=True), grade(solution=True)
    assert validation["valid"] and test["valid"], validation["message"]
    assert validation["details"]["seed"] != test["details"]["seed"]
    assert validation["details"]["original_loss"] != test["details"]["original_loss"]
    assert str(validation["details"]["seed"]) not in validation["message"]


# Cheat 1: patching time. The grader counts CPU time from outside (the kernel's accounting of
# every process of the run), so patched time functions change nothing; Python start-up hooks
# in the workspace or in ~/.local never run: no run starts Python, every run is forked from the
# grader's runner, which was started with `python -I`.
TIME_PATCH = """\
import time
for name in ("time", "perf_counter", "monotonic", "process_time"):
    setattr(time, name, lambda: 0.0)
for name in ("time_ns", "perf_counter_ns", "monotonic_ns", "process_time_ns"):
    setattr(time, name, lambda: 0)
"""
SLOW_ORIGINAL_HOOK = """\
import os, sys, time
if not os.getcwd().startswith("/home/agent"):  # the grader's original runs elsewhere
    end = time.process_time() + 10
    while time.process_time() < end:
        pass
"""


@pytest.mark.slow
@pytest.mark.docker
def test_patching_time_and_python_startup_changes_nothing(grade: Grade) -> None:
    user_site = ".local/lib/python3.11/site-packages"
    verdict = grade(
        files={
            "train.py": _with_prelude(START_SCRIPT, TIME_PATCH),
            "sitecustomize.py": TIME_PATCH + SLOW_ORIGINAL_HOOK,
            f"{user_site}/usercustomize.py": TIME_PATCH + SLOW_ORIGINAL_HOOK,
            f"{user_site}/slow.pth": "import usercustomize\n",
        }
    )
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < NULL_CEILING, verdict["details"]
    untouched = grade()["details"]["original_cpu_s"]
    assert verdict["details"]["original_cpu_s"] < untouched + 5  # the 10 s hook never ran


# Cheat 2: hard-coding the output. A model trained ahead of time (for the public seed 0, the
# only one the agent knows) is shipped and copied; the grader's seed is another.
COPY_MODEL = """\
import shutil, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
shutil.copyfile("model_seed0.pt", args["--out"])
"""


@pytest.fixture(scope="module")
def precomputed_model(
    docker_client: Any, sandbox_image: str, tmp_path_factory: pytest.TempPathFactory
) -> bytes:
    """The reference solution's model for the public seed 0, trained in the sandbox image."""
    out = tmp_path_factory.mktemp("precomputed")
    docker_client.containers.run(
        sandbox_image,
        ["python3", "/solution/train.py", "--seed", "0", "--out", "/out/model.pt"],
        volumes={
            str(TASK / "solution"): {"bind": "/solution", "mode": "ro"},
            str(out): {"bind": "/out", "mode": "rw"},
        },
        network_disabled=True,
        user="root",
        remove=True,
    )
    return (out / "model.pt").read_bytes()


@pytest.mark.slow
@pytest.mark.docker
def test_shipping_a_model_trained_in_advance_is_invalid(
    grade: Grade, precomputed_model: bytes
) -> None:
    verdict = grade(
        split="validation",
        files={"train.py": COPY_MODEL, "model_seed0.pt": precomputed_model},
    )
    assert verdict["valid"] is False
    assert "is not the original training's model" in verdict["message"]


# Cheat 3: a fake result. Score and model files left in the workspace are never read.
@pytest.mark.slow
@pytest.mark.docker
def test_score_and_model_files_left_in_the_workspace_are_ignored(
    grade: Grade, precomputed_model: bytes
) -> None:
    verdict = grade(
        split="validation",
        files={
            "train.py": "print('done')\n",
            "model.pt": precomputed_model,
            "score.json": '{"raw_score": 9.0, "valid": true}',
            "result.json": '{"speedup": 1000}',
        },
    )
    assert verdict["valid"] is False
    assert "no model file was written at the --out path" in verdict["message"]


# Cheat 4: editing the provided check instead of solving. Here the check always passes and the
# workspace's copy of the original is slowed down, so the local check reports a big speed-up
# for a train.py that trains one epoch less; the grader uses its own copies of both.
@pytest.mark.slow
@pytest.mark.docker
def test_edited_check_and_original_do_not_fool_the_grader(grade: Grade) -> None:
    fewer_epochs = SOLUTION_SCRIPT.replace("\nEPOCHS = 14\n", "\nEPOCHS = 13\n")
    assert fewer_epochs != SOLUTION_SCRIPT
    verdict = grade(
        split="validation",
        files={
            "train.py": fewer_epochs,
            "check_tolerance.py": "print('PASS: speed-up 100x')\n",
            "original/train.py": "import time\ntime.sleep(60)\n" + START_SCRIPT,
        },
    )
    assert verdict["valid"] is False
    assert "is not the original training's model" in verdict["message"]
    assert "parameters are" in verdict["message"]


# Cheat 5: a process left running. train.py (the original code) first starts a detached CPU
# burner that competes with the timed runs and, once train.py has exited, overwrites the
# model and leaves a fake score. The original runs before any agent code, every agent process
# is killed when train.py exits (so the overwrite never happens), and the burner's CPU time
# until then counts against the agent: nothing is inflated.
BURNER = """\
import os, sys, time
out, parent = sys.argv[1], int(sys.argv[2])
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    end = time.time() + 0.05
    while time.time() < end:
        pass
time.sleep(0.5)
open(out, "wb").write(b"overwritten")
open("score.json", "w").write('{"raw_score": 9}')
while True:
    pass
"""
LINGERING = f"""\
import os, subprocess, sys
subprocess.Popen(
    ["setsid", sys.executable, "-c", {BURNER!r}, sys.argv[sys.argv.index("--out") + 1],
     str(os.getpid())],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    start_new_session=True,
)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_lingering_burner_neither_inflates_the_score_nor_touches_the_model(
    grade: Grade,
) -> None:
    verdict = grade(files={"train.py": _with_prelude(START_SCRIPT, LINGERING)})
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["distance"] == 0.0  # the model read is train.py's own
    assert verdict["normalized_score"] < NULL_CEILING, verdict["details"]


# The agent's code runs as the unprivileged user: the grader's files (its seeds, its copy of
# the original) and the original's run (root's, in a root-only folder) are out of reach, no
# command line in /proc shows a seed (every run is forked from the grader's runner, so each
# shows the runner's), and the attempt leaves nothing to score.
READ_GRADER = """\
import glob, os, sys
for path in ("/grader/score.py", "/grader/original/train.py"):
    try:
        open(path).read()
    except OSError as error:
        print(f"{type(error).__name__}: {path}", file=sys.stderr)
    else:
        print(f"read {path}", file=sys.stderr)
found = glob.glob("/tmp/**/*.pt", recursive=True)
for scratch in glob.glob("/tmp/speedup-training-grade-*"):  # listable: /tmp is; enter it blind
    for name in ("original/model.pt", "original/train.py"):
        try:
            open(f"{scratch}/{name}", "rb").read()
            found.append(name)
        except OSError as error:
            print(f"{type(error).__name__}: {name}", file=sys.stderr)
print(f"original models found: {len(found)}", file=sys.stderr)
seeds = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        seeds += b"--seed" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        pass
print(f"command lines with a seed: {seeds}", file=sys.stderr)
sys.exit(1)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_agent_code_cannot_read_the_grader_or_the_originals_model(grade: Grade) -> None:
    verdict = grade(split="validation", files={"train.py": READ_GRADER})
    assert verdict["valid"] is False
    assert "PermissionError: /grader/score.py" in verdict["message"]
    assert "PermissionError: /grader/original/train.py" in verdict["message"]
    assert "read /grader" not in verdict["message"]
    assert "PermissionError: original/model.pt" in verdict["message"]
    assert "PermissionError: original/train.py" in verdict["message"]
    assert "original models found: 0" in verdict["message"]
    assert "command lines with a seed: 0" in verdict["message"]


# Cheat 6: reuse work between runs. train.py (the reference) copies a model an earlier run left
# in a cache (in the temporary folders, its home or the workspace) instead of training. Every
# run has its own fresh copy of the submitted workspace (also its HOME), and after every run
# the grader deletes what the agent user owns in the temporary folders, so every run trains
# (and a cached model would be for another seed anyway: each run gets its own).
CACHES = (
    "/tmp/cache.pt", "/var/tmp/cache.pt", "/dev/shm/cache.pt",
    "~/.cache/model.pt", "model-cache.pt",
)
USE_A_CACHE = f"""\
import os, shutil, sys
_out = sys.argv[sys.argv.index("--out") + 1]
for _path in map(os.path.expanduser, {CACHES!r}):
    if os.path.exists(_path):
        shutil.copyfile(_path, _out)
        raise SystemExit(0)
"""
FILL_THE_CACHES = f"""
for _path in map(os.path.abspath, map(os.path.expanduser, {CACHES!r})):
    os.makedirs(os.path.dirname(_path), exist_ok=True)
    shutil.copyfile(_out, _path)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_models_cached_by_an_earlier_run_are_gone_before_the_next(grade: Grade) -> None:
    script = _with_prelude(SOLUTION_SCRIPT, USE_A_CACHE) + FILL_THE_CACHES
    verdict = grade(split="validation", files={"train.py": script})
    assert verdict["valid"], verdict["message"]
    runs = verdict["details"]["runs"]
    assert len(runs) >= 2
    assert min(run["cpu_s"] for run in runs) > 0.1, runs  # every run trained


# Cheat 7: pass data between runs where deleting what changed does not look: an extended
# attribute and the modification time of a directory shipped in the workspace (`original/`).
# A run that finds the mark an earlier run left fails on purpose, so a valid grading with
# several runs shows that no run found one: each has its own fresh copy of the workspace.
MARK = 123_456_789_000
FIND_A_MARK = f"""\
import os
_shipped = os.path.abspath("original")
_found = os.stat(_shipped).st_mtime_ns == {MARK}
try:
    _found = _found or os.getxattr(_shipped, "user.mark") == b"run"
except OSError:
    pass
if _found:
    raise SystemExit("found what an earlier run left")
"""
LEAVE_A_MARK = f"""
try:
    os.setxattr(_shipped, "user.mark", b"run")
except OSError:
    pass
os.utime(_shipped, ns=({MARK}, {MARK}))
"""


@pytest.mark.slow
@pytest.mark.docker
def test_marks_in_directory_times_and_xattrs_do_not_reach_the_next_run(grade: Grade) -> None:
    script = _with_prelude(SOLUTION_SCRIPT, FIND_A_MARK) + LEAVE_A_MARK
    verdict = grade(split="validation", files={"train.py": script})
    assert verdict["valid"], verdict["message"]
    assert len(verdict["details"]["runs"]) >= 2


# Cheat: train in a child nobody waits for. train.py ignores SIGCHLD and forks; the child trains
# and saves the model, the parent sleeps on a pipe until the child has exited. The kernel reaps
# a child whose parent ignores SIGCHLD itself, so no wait4 (the process tree's accounting) sees
# its CPU time: counted that way the run would cost almost nothing. The grader counts the
# grading sandbox's cgroup CPU time, which holds every process.
HAND_OFF = """\
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
_read, _write = os.pipe()
_child = os.fork()
if _child != 0:
    os.close(_write)
    os.read(_read, 1)  # returns once the child is exiting
    while True:  # and stay until the kernel has reaped it, so no other parent ever waits for it
        try:
            os.kill(_child, 0)
        except ProcessLookupError:
            os._exit(0)
        time.sleep(0.001)
os.close(_read)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_training_in_a_child_nobody_waits_for_is_counted(grade: Grade) -> None:
    verdict = grade(files={"train.py": _with_prelude(START_SCRIPT, HAND_OFF)})
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["distance"] == 0.0
    assert verdict["normalized_score"] < NULL_CEILING, verdict["details"]
    for run in verdict["details"]["runs"]:  # the process tree saw almost none of the work
        assert run["tree_cpu_s"] < 0.2 * run["cpu_s"], verdict["details"]["runs"]


def test_cheat_scripts_are_valid_python() -> None:
    sources = (TIME_PATCH + SLOW_ORIGINAL_HOOK, COPY_MODEL, BURNER, LINGERING, READ_GRADER,
               USE_A_CACHE + FILL_THE_CACHES, FIND_A_MARK + LEAVE_A_MARK, HAND_OFF)
    for source in sources:
        compile(source, "<cheat>", "exec")
