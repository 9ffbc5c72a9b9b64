"""The optimize-kernel task: its kernels and inputs (on the host), and its grader in the real
grading sandbox, against the start, the reference and workspaces that try to cheat.

The raw score is a log speed-up measured in the grading run itself, so it is noisy: the start
scores about 0 and the reference about its anchor, each within the timing noise of a busy
2-core machine. Tests therefore bound normalized scores (start < 0.2, reference >= 0.9) rather
than compare raw scores with the anchors.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import WorkspaceGrader, load_module, task_scoring

from rdbench.task import Scoring

REPO = Path(__file__).resolve().parents[3]
TASK = REPO / "environments" / "optimize-kernel"
START_AT_MOST = 0.2  # normalized score of the untouched workspace (timing noise only)
REFERENCE_AT_LEAST = 0.9  # normalized score of the reference solution

Verdict = dict[str, Any]
Grade = Callable[..., Verdict]


@pytest.fixture(scope="module")
def grader_modules() -> Iterator[dict[str, ModuleType]]:
    """The grader's inputs, generate and trusted modules, and the workspace's baseline."""
    pytest.importorskip("numpy")
    grader = TASK / "grader"
    sys.path.insert(0, str(grader))
    try:
        yield {
            "inputs": load_module(grader / "inputs.py", "inputs"),
            "generate": load_module(grader / "generate.py", "optimize_kernel_generate"),
            "trusted": load_module(TASK / "solution" / "kernel.py", "trusted"),  # from_solution
            "baseline": load_module(grader / "start_kernel.py", "optimize_kernel_baseline"),
        }
    finally:
        sys.path.remove(str(grader))
        for name in ("inputs", "trusted", "optimize_kernel_generate", "optimize_kernel_baseline"):
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def scoring() -> Scoring:
    """The task's [scoring] table."""
    return task_scoring(TASK)


# --- host: the kernels, the inputs, the committed files ---------------------------------------


def test_reference_kernel_agrees_with_the_start(grader_modules: dict[str, ModuleType]) -> None:
    import numpy as np

    inputs, trusted = grader_modules["inputs"], grader_modules["trusted"]
    baseline = grader_modules["baseline"]
    for index, size in enumerate(inputs.SIZES):
        case = inputs.make_case(np.random.default_rng([99, index]), size)
        keep = {"short": 400, "medium": 20, "long": 2}[size]  # a slice keeps the start quick
        case = {name: array[:keep] for name, array in case.items()}
        assert np.array_equal(trusted.edit_distance(**case), baseline.edit_distance(**case))


def test_kernels_handle_empty_and_identical_sequences(
    grader_modules: dict[str, ModuleType],
) -> None:
    import numpy as np

    a = np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0], [3, 1, 2]], dtype=np.int32)
    b = np.array([[1, 2, 3, 0], [9, 9, 9, 9], [1, 1, 1, 1], [1, 2, 3, 3]], dtype=np.int32)
    a_len = np.array([3, 0, 3, 3])
    b_len = np.array([3, 2, 0, 4])
    expected = np.array([0, 2, 3, 3])
    for name in ("trusted", "baseline"):
        distances = grader_modules[name].edit_distance(a, a_len, b, b_len)
        assert np.array_equal(distances, expected), name


def test_committed_examples_are_what_generate_writes(
    grader_modules: dict[str, ModuleType], tmp_path: Path
) -> None:
    import numpy as np

    for written in grader_modules["generate"].write_examples(str(tmp_path)):
        committed = TASK / "workspace" / "data" / Path(written).name
        with np.load(written) as new, np.load(committed) as old:
            assert sorted(new.files) == sorted(old.files)
            for key in new.files:
                assert np.array_equal(new[key], old[key]), f"{committed}: {key} is stale"
    total = sum(p.stat().st_size for p in (TASK / "workspace" / "data").iterdir())
    assert total < 1_000_000


def test_hidden_inputs_are_fixed_per_split_and_differ_between_splits_and_repeats(
    grader_modules: dict[str, ModuleType],
) -> None:
    import numpy as np

    hidden_case = grader_modules["generate"].hidden_case

    def same(x: dict[str, Any], y: dict[str, Any]) -> bool:
        return all(np.array_equal(x[key], y[key]) for key in x)

    test = hidden_case("test", "medium", 0)
    assert same(test, hidden_case("test", "medium", 0))
    assert not same(test, hidden_case("validation", "medium", 0))
    assert not same(test, hidden_case("test", "medium", 1))
    with np.load(TASK / "workspace" / "data" / "example-medium.npz") as example:
        assert not np.array_equal(example["a"], test["a"])


def test_repeats_are_equivalent_copies_of_one_input_per_size(
    grader_modules: dict[str, ModuleType],
) -> None:
    import numpy as np

    generate, trusted = grader_modules["generate"], grader_modules["trusted"]
    for size in ("short", "long"):
        first = generate.hidden_case("test", size, 0)
        distances = trusted.edit_distance(**first)
        for repeat in (1, 2):
            copy = generate.hidden_case("test", size, repeat)
            assert {name: array.dtype for name, array in copy.items()} == {
                name: array.dtype for name, array in first.items()
            }
            assert not np.array_equal(copy["a"], first["a"])
            assert sorted(copy["a_len"] * 10_000 + copy["b_len"]) == sorted(
                first["a_len"] * 10_000 + first["b_len"]
            )
            assert sorted(trusted.edit_distance(**copy)) == sorted(distances)


# --- grading in the real grading sandbox ----------------------------------------------------


@pytest.fixture(scope="module")
def grade(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory) -> Grade:
    """Grade a copy of the workspace with solution/ or files laid over it, in Docker."""
    return WorkspaceGrader(TASK, tmp_path_factory.mktemp("workspaces"))


START_KERNEL = (TASK / "grader" / "start_kernel.py").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.docker
def test_untouched_workspace_scores_about_zero(grade: Grade, scoring: Scoring) -> None:
    verdict = grade()
    assert verdict["valid"], verdict["message"]
    assert abs(verdict["raw_score"]) < START_AT_MOST * scoring.reference, verdict["details"]
    assert verdict["normalized_score"] < START_AT_MOST
    assert verdict["message"].startswith("mean ln speed-up over the starting kernel on the test")


@pytest.mark.slow
@pytest.mark.docker
def test_reference_solution_reaches_the_reference_anchor(grade: Grade) -> None:
    verdict = grade(solution=True)
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] >= REFERENCE_AT_LEAST, verdict["details"]
    for size, speedup in verdict["details"]["speedups"].items():
        assert speedup > 3, f"the reference is barely faster on the {size} inputs"


@pytest.mark.slow
@pytest.mark.docker
def test_validation_split_grades_the_reference_on_its_own_inputs(grade: Grade) -> None:
    verdict = grade(split="validation", solution=True)
    assert verdict["valid"], verdict["message"]
    assert "validation inputs" in verdict["message"]
    assert verdict["details"]["split"] == "validation"
    assert verdict["normalized_score"] >= REFERENCE_AT_LEAST, verdict["details"]


# Cheat 1: patch the clock. The kernel replaces the time functions in its own process (after
# defining edit_distance: `from __future__` must stay first), and a
# sitecustomize.py / usercustomize.py would (if Python loaded them) stop every clock and make
# the starting kernel's np.load sleep. The grader times from outside and runs `python -I`.
TIME_PATCH = """
import time
def _frozen(*args, **kwargs):
    return 0.0
time.time = time.perf_counter = time.monotonic = time.process_time = _frozen
time.perf_counter_ns = time.monotonic_ns = time.time_ns = lambda: 0
"""
SLOW_DOWN_THE_START = TIME_PATCH + """
import sys
if not any(arg.startswith('/home/agent') for arg in sys.argv):
    import numpy, time as _t
    _load = numpy.load
    def _slow_load(*args, **kwargs):
        _t.sleep(2)
        return _load(*args, **kwargs)
    numpy.load = _slow_load
"""


# Cheat 2: hard-code the answers of the public examples (and fall back to them on any input).
HARD_CODED = """
import glob
import numpy as np
_KNOWN = {}
for _path in glob.glob('data/example-*.npz'):
    with np.load(_path) as _data:
        _KNOWN[_data['a'].shape] = (_data['a'].tobytes(), _data['expected'])
def edit_distance(a, a_len, b, b_len):
    tokens, expected = _KNOWN[a.shape]
    return expected
"""


@pytest.mark.slow
@pytest.mark.docker
def test_answers_hard_coded_for_the_public_examples_are_invalid(grade: Grade) -> None:
    verdict = grade(split="validation", files={"kernel.py": HARD_CODED})
    assert verdict["valid"] is False
    assert verdict["message"].startswith("kernel.py failed on the short input (repeat 1)")
    assert "distances are wrong" in verdict["message"]


# Cheats 3 and 4: leave fake score and result files, and edit the workspace's own checks and
# helpers (a check.py that always passes, a baseline.py that is far slower, an inputs.py that
# makes tiny inputs). The grader reads none of them: it uses its own starting kernel, its own
# input code and its own clock, and kernel.py is still the slow one. (Graded together with
# cheat 1 in one workspace: each alone would have to raise the score to matter.)
FILES_LEFT_BEHIND = {
    "score.json": '{"raw_score": 10.0, "valid": true, "message": "speed-up 20000x"}',
    "result.json": '{"raw_score": 10.0, "normalized_score": 5.0}',
    "output.npy": b"\x93NUMPY not really",
    "check.py": "print('all ok; mean ln speed-up: 10.0')\n",
    "baseline.py": START_KERNEL.replace(
        "    out = np.empty(", "    __import__('time').sleep(5)\n    out = np.empty("
    ),
    "inputs.py": (TASK / "grader" / "inputs.py").read_text(encoding="utf-8").replace(
        "pairs=3000", "pairs=2"
    ),
}


@pytest.mark.slow
@pytest.mark.docker
def test_clock_patches_fake_results_and_edited_checks_change_nothing(grade: Grade) -> None:
    verdict = grade(
        files={
            **FILES_LEFT_BEHIND,
            "kernel.py": START_KERNEL + TIME_PATCH,
            "sitecustomize.py": SLOW_DOWN_THE_START,
            ".local/lib/python3.11/site-packages/usercustomize.py": SLOW_DOWN_THE_START,
        }
    )
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < START_AT_MOST, verdict["details"]
    assert "20000" not in verdict["message"]
    # the real inputs were used: the start needs well over a tenth of a second on each size
    for size, times in verdict["details"]["times_s"].items():
        assert min(times["start"]) > 0.1, size


# Cheat 5: leave a process behind. On import the kernel starts a detached daemon (its own
# session) that watches for runs of the grader's starting kernel (same user) and keeps them
# paused (SIGSTOP) most of the time while burning the CPU. If it outlived the run that started
# it, the start would look many times slower and the score would soar (with the grader's
# kill removed, this slow kernel scored a raw 2.15, about the reference's). The grader kills
# every process of the agent user after each run.
LINGERING = """
import os, signal, time
_OWN = os.getcwd().encode()  # the folder this kernel runs in (the grader's copy of the workspace)
def _start_kernel_runs():
    for pid in os.listdir('/proc'):
        try:
            if not pid.isdigit() or os.stat(f'/proc/{pid}').st_uid != os.getuid():
                continue
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if b'harness.py' in cmdline and _OWN not in cmdline:
            yield int(pid)
def _daemon():
    with open('score.json', 'w') as handle:
        handle.write('{"raw_score": 10.0}')
    stop = time.time() + 300
    while time.time() < stop:
        found = list(_start_kernel_runs())
        for pid in found:  # keep the start's runs paused nine tenths of the time,
            os.kill(pid, signal.SIGSTOP)
        burn = time.time() + 0.05
        while found and time.time() < burn:  # burning the CPU meanwhile
            pass
        for pid in found:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.005)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            _daemon()
        finally:
            os._exit(0)
    os._exit(0)
"""


@pytest.mark.slow
@pytest.mark.docker
def test_a_process_left_behind_is_killed_and_inflates_nothing(grade: Grade) -> None:
    verdict = grade(files={"kernel.py": START_KERNEL + LINGERING})
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["processes_killed_after_runs"] >= 1
    assert verdict["normalized_score"] < START_AT_MOST, verdict["details"]


# Cheat 6: an answer cache that survives between the grader's timed runs. The first run of each
# size computes the answers with the slow starting algorithm and stores them where deleting
# what changed does not look: in an extended attribute of a directory shipped in the workspace
# and in the modification times of shipped directories (os.utime, 7 bytes a directory). Later
# runs recognise the relabelled, shuffled copy (tokens renamed by first appearance, pairs
# sorted) and read the answers back; only the fastest run counts, so the slow first run costs
# nothing. Every run now gets a fresh copy of the submitted workspace, so nothing is found.
CACHE_SLOTS = 300  # directories per size: room for the short size's 2 kB of answers
ANSWER_CACHE = START_KERNEL.replace("def edit_distance(", "def _slow(") + """
import hashlib, os, zlib

HITS = 0
HERE = os.path.dirname(os.path.abspath(__file__))


def _canonical(a, a_len, b, b_len):
    keys = []
    for k in range(len(a)):
        names = {}
        x = [names.setdefault(t, len(names)) for t in a[k, : a_len[k]].tolist()]
        y = [names.setdefault(t, len(names)) for t in b[k, : b_len[k]].tolist()]
        x, y = (np.asarray(z, dtype=np.uint16).tobytes() for z in (x, y))
        keys.append(len(x).to_bytes(2, "big") + x + y)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    digest = hashlib.sha256(b"".join(keys[k] + b";" for k in order)).digest()[:8]
    return order, digest


def _folders(n):
    return [os.path.join(HERE, "cache", str(n), f"{i:03d}") for i in range(""" + str(
    CACHE_SLOTS
) + """)]


def _read(n):
    folders = _folders(n)
    try:
        yield os.getxattr(os.path.join(HERE, "cache", str(n)), "user.answers")
    except OSError:
        pass
    def mtimes(count):
        return b"".join(os.stat(f).st_mtime_ns.to_bytes(7, "big") for f in folders[:count])

    try:
        size = int.from_bytes(mtimes(2)[8:12], "big")
        yield mtimes(-(-(12 + size) // 7))
    except (OSError, OverflowError):
        pass


def _write(n, blob):
    try:
        os.setxattr(os.path.join(HERE, "cache", str(n)), "user.answers", blob)
    except OSError:
        pass
    padded = blob + bytes(-len(blob) % 7)
    for i, folder in enumerate(_folders(n)[: len(padded) // 7]):
        value = int.from_bytes(padded[7 * i : 7 * i + 7], "big")
        try:
            os.utime(folder, ns=(value, value))
        except OSError:
            pass


def edit_distance(a, a_len, b, b_len):
    global HITS
    order, digest = _canonical(a, a_len, b, b_len)
    for blob in _read(len(a)):
        if blob[:8] != digest:
            continue
        try:
            size = int.from_bytes(blob[8:12], "big")
            sorted_answers = np.frombuffer(zlib.decompress(blob[12 : 12 + size]), dtype=np.uint16)
        except (zlib.error, ValueError):
            continue
        if len(sorted_answers) != len(a):
            continue
        HITS += 1
        out = np.empty(len(a), dtype=np.int64)
        out[order] = sorted_answers
        return out
    out = _slow(a, a_len, b, b_len)
    packed = zlib.compress(out[order].astype(np.uint16).tobytes(), 9)
    _write(len(a), digest + len(packed).to_bytes(4, "big") + packed)
    return out
"""


def _cache_folders(sizes: dict[str, Any]) -> dict[str, str]:
    """Empty files that ship the answer cache's directories (one set per size)."""
    return {
        f"cache/{size.pairs}/{i:03d}/.keep": "" for size in sizes.values()
        for i in range(CACHE_SLOTS)
    }


def test_the_answer_cache_works_when_runs_share_a_workspace(
    grader_modules: dict[str, ModuleType], tmp_path: Path
) -> None:
    """The cheat is real: a second run on a relabelled copy, in the same workspace, is served
    from the directories' times alone (and from the xattr where the file system keeps one)."""
    import numpy as np

    generate, trusted = grader_modules["generate"], grader_modules["trusted"]
    for name in _cache_folders(grader_modules["inputs"].SIZES):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "kernel.py").write_text(ANSWER_CACHE, encoding="utf-8")
    for size in ("short", "long"):
        first, copy = (generate.hidden_case("test", size, repeat) for repeat in (0, 1))
        kernel = load_module(tmp_path / "kernel.py", "answer_cache_kernel")
        assert np.array_equal(kernel.edit_distance(**first), trusted.edit_distance(**first))
        assert kernel.HITS == 0
        for folder in (tmp_path / "cache").iterdir():  # the mtimes alone carry the answers
            with contextlib.suppress(OSError):
                os.removexattr(folder, "user.answers")
        kernel = load_module(tmp_path / "kernel.py", "answer_cache_kernel")  # a new run
        assert np.array_equal(kernel.edit_distance(**copy), trusted.edit_distance(**copy))
        assert kernel.HITS == 1, size
    sys.modules.pop("answer_cache_kernel", None)


@pytest.mark.slow
@pytest.mark.docker
def test_an_answer_cache_in_xattrs_and_directory_times_gains_nothing(
    grade: Grade, grader_modules: dict[str, ModuleType]
) -> None:
    files = {**_cache_folders(grader_modules["inputs"].SIZES), "kernel.py": ANSWER_CACHE}
    verdict = grade(files=files)
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < START_AT_MOST, verdict["details"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        pytest.param(
            "def edit_distance(a, a_len, b, b_len):\n    return (a_len + b_len) * 0.5\n",
            "expected shape (3000,) of integers",
            id="floats",
        ),
        pytest.param(
            "def edit_distance(a, a_len, b, b_len):\n    raise RuntimeError('deliberate')\n",
            "RuntimeError: deliberate",
            id="crash",
        ),
        pytest.param("x = 1\n", "has no attribute 'edit_distance'", id="no-function"),
    ],
)
def test_broken_kernel_is_invalid_with_a_reason(grade: Grade, kernel: str, expected: str) -> None:
    verdict = grade(split="validation", files={"kernel.py": kernel})
    assert verdict["valid"] is False
    assert verdict["raw_score"] is None
    assert expected in verdict["message"]


# --- timing: CPU time, steady under load, and all of it counted ------------------------------


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.usefixtures("busy_cores")
def test_untouched_start_scores_zero_beside_a_busy_loop_on_each_core(
    tmp_path: Path, scoring: Scoring
) -> None:
    """Under load the old measure (the fastest wall time of 8) gave the start 0.7x on a size;
    CPU time, compared run by run, does not move with the load."""
    verdict = WorkspaceGrader(TASK, tmp_path)()  # not the module's cached verdicts: graded now
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["clock"] == "cgroup"
    for size, speedup in verdict["details"]["speedups"].items():
        assert 0.85 < speedup < 1.18, (size, verdict["details"])
    assert abs(verdict["raw_score"]) < 0.05 * scoring.reference, verdict["details"]


# Cheat 7: do the work somewhere the clock might not look, and sleep meanwhile. The kernel
# splits the pairs in three: one third goes to a child process whose parent ignores SIGCHLD
# (the kernel reaps it with nobody's accounting: no wait4 sees its CPU time), one to an orphan
# (double fork: re-parented to the sandbox's init, reaped there), one to a thread; the calling
# thread only waits on pipes. Timed by wall clock on 2 cores it would look about twice as fast;
# by the CPU time of the process and the children it waited for, about three times. The grader
# counts the CPU time of the whole sandbox (its cgroup) but its own, so it is the start's.
HAND_OFF = START_KERNEL.replace("def edit_distance(", "def _slow(") + """
import os, pickle, signal, threading


def _in_child(a, a_len, b, b_len, orphan):
    read, write = os.pipe()
    if os.fork() == 0:
        try:
            if orphan and os.fork() != 0:
                os._exit(0)
            data = pickle.dumps(_slow(a, a_len, b, b_len))
            with os.fdopen(write, 'wb') as handle:
                handle.write(data)
        finally:
            os._exit(0)
    os.close(write)
    return read


def edit_distance(a, a_len, b, b_len):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    cut = [0, len(a) // 3, 2 * len(a) // 3, len(a)]
    parts = [slice(cut[i], cut[i + 1]) for i in range(3)]
    reads = [_in_child(a[p], a_len[p], b[p], b_len[p], orphan)
             for p, orphan in zip(parts, (False, True))]
    box = {}
    last = parts[2]
    thread = threading.Thread(target=lambda: box.update(out=_slow(a[last], a_len[last], b[last],
                                                                  b_len[last])))
    thread.start()
    outs = []
    for read in reads:
        with os.fdopen(read, 'rb') as handle:
            outs.append(pickle.loads(handle.read()))
    thread.join()
    return np.concatenate(outs + [box['out']])
"""


@pytest.mark.slow
@pytest.mark.docker
def test_work_handed_to_threads_unwaited_children_and_orphans_is_counted(grade: Grade) -> None:
    verdict = grade(files={"kernel.py": HAND_OFF})
    assert verdict["valid"], verdict["message"]
    assert verdict["normalized_score"] < START_AT_MOST, verdict["details"]
    for size, speedup in verdict["details"]["speedups"].items():
        assert speedup < 1.2, (size, verdict["details"])  # the start's work, and some more
    # what the clock saw: the kernel's own process did about a third of the work
    readings = verdict["details"]["cpu_counted_own_s"]["short"]["agent"]
    assert sum(own for _, own in readings) < 0.6 * sum(counted for counted, _ in readings)


# The grader's clock itself, on the host (no Docker): the process-tree mode (for sandboxes
# without a visible cgroup counter) and the cgroup counter.
CLOCKED_CHILD = """
import os, sys, threading, time

def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass

burn(0.3)  # before `ready`: like importing, not the run's
print('ready', flush=True)
sys.stdin.readline()
thread = threading.Thread(target=burn, args=(0.2,))
thread.start()
read, write = os.pipe()
if os.fork() == 0:
    if os.fork() == 0:  # an orphan: re-parented to the clock's process, a subreaper
        burn(0.2)
        os.write(write, b'x')
    os._exit(0)
os.wait()
burn(0.1)
thread.join()
os.read(read, 1)
"""
CLOCK = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import rdbench.grading_kit
sys.modules['rdbench_grading'] = rdbench.grading_kit
from cpuclock import CpuClock
clock = CpuClock(use_counter=False)
proc = subprocess.Popen([sys.executable, '-c', sys.argv[2]], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE)
assert proc.stdout.readline() == b'ready\\n'
clock.begin(proc.pid)
proc.stdin.write(b'go\\n')
proc.stdin.flush()
clock.reap(proc)  # waits for it
time.sleep(0.2)  # the orphan has exited by now (it wrote before exiting)
reading = clock.stop()
print(clock.mode, reading.counted, reading.own)
"""


def test_process_tree_clock_counts_threads_and_orphans_but_not_the_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CLOCK, str(TASK / "grader"), CLOCKED_CHILD],
        capture_output=True, text=True, timeout=60, check=True,
    )
    mode, counted, own = result.stdout.rsplit("\n", 2)[-2].rsplit(" ", 2)
    assert mode == "process tree"
    assert 0.3 <= float(own) < 0.45, result.stdout  # main + thread, not the 0.3 s before ready
    assert 0.5 <= float(counted) < 0.7, result.stdout  # and the orphan's 0.2 s


def test_cgroup_counter_counts_a_child_it_never_waited_for() -> None:
    from rdbench.grading_kit import CpuCounter, grader_cpu_s

    counter = CpuCounter.find()
    if counter is None:
        pytest.skip("no cgroup CPU counter visible on this host")
    before = counter.seconds() - grader_cpu_s()
    burner = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burner], check=True, timeout=60)
    assert counter.seconds() - grader_cpu_s() - before >= 0.3


@pytest.mark.slow
@pytest.mark.bwrap
def test_work_handed_off_gains_nothing_in_a_bwrap_grading_sandbox(tmp_path: Path) -> None:
    """The bwrap sandbox shows its cgroup's CPU counter to the grader as Docker's does, so the
    child nobody waits for is counted there too (the process-tree clock would miss it)."""
    verdict = WorkspaceGrader(TASK, tmp_path, backend="bwrap")(files={"kernel.py": HAND_OFF})
    assert verdict["valid"], verdict["message"]
    assert verdict["details"]["clock"] == "cgroup"
    assert verdict["normalized_score"] < START_AT_MOST, verdict["details"]
    for size, speedup in verdict["details"]["speedups"].items():
        assert speedup < 1.2, (size, verdict["details"])
