"""The grader SDK (rdbench/grading_kit.py, `rdbench_grading` in the grading sandbox): the safe
reads of the agent's files, `grade_main` and its scratch folder, and the timing helpers, on the
host (a grader is a plain Python script; these run it as one)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rdbench.grading_kit import (
    ArtifactError,
    alternated,
    fastest,
    median_ratio,
    pinned_core,
    read_agent_file,
    read_workspace_file,
)

KIT = Path(__file__).resolve().parents[1] / "rdbench" / "grading_kit.py"


# ---- read_agent_file / read_workspace_file ---------------------------------------------------


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "out.bin").write_bytes(b"\x00data")
    assert read_agent_file(str(tmp_path / "out.bin"), 10) == b"\x00data"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("symlink", "out.bin could not be opened: it is a symlink", id="symlink"),
        pytest.param("fifo", "out.bin is not a regular file", id="fifo"),
        pytest.param("folder", "out.bin is not a regular file", id="folder"),
        pytest.param("large", "out.bin is larger than 10 bytes", id="too-large"),
        pytest.param("missing", "out.bin was not written", id="missing"),
    ],
)
def test_what_is_not_a_modest_regular_file_is_refused(
    tmp_path: Path, kind: str, expected: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden labels")
    path = tmp_path / "out.bin"
    if kind == "symlink":
        path.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(path)  # nobody writes it: an open that waited would hang the test
    elif kind == "folder":
        path.mkdir()
    elif kind == "large":
        path.write_bytes(b"x" * 11)
    result: list[BaseException | bytes] = []
    reader = threading.Thread(
        target=lambda: result.append(_attempt(str(path), 10)), daemon=True
    )
    reader.start()
    reader.join(timeout=5)
    assert result, "read_agent_file blocked"
    assert isinstance(result[0], ArtifactError)
    assert str(result[0]).startswith(expected)
    assert "hidden" not in str(result[0])


def _attempt(path: str, limit: int) -> BaseException | bytes:
    try:
        return read_agent_file(path, limit)
    except ArtifactError as error:
        return error


def test_a_missing_file_says_what_the_grader_chose(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^train\.py wrote nothing at --out$"):
        read_agent_file(str(tmp_path / "p.csv"), 10, missing="train.py wrote nothing at --out")


def test_a_workspace_file_below_folders_is_read(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "m.py").write_text("x = 1\n")
    assert read_workspace_file(str(tmp_path), "pkg/sub/m.py", 100) == b"x = 1\n"
    assert read_workspace_file(str(tmp_path), "./pkg//sub/m.py", 100) == b"x = 1\n"


def test_a_symlinked_folder_on_the_way_is_never_followed(tmp_path: Path) -> None:
    workspace, hidden = tmp_path / "workspace", tmp_path / "grader"
    workspace.mkdir()
    hidden.mkdir()
    (hidden / "m.py").write_text("SECRET = 1\n")
    (workspace / "pkg").symlink_to(hidden)
    with pytest.raises(ArtifactError, match="a folder on its path is a symlink") as caught:
        read_workspace_file(str(workspace), "pkg/m.py", 100)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("relative", ["../grader/m.py", "/etc/passwd", "", "pkg/../../x"])
def test_a_path_leaving_the_workspace_is_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(ArtifactError, match="is not a path inside the workspace"):
        read_workspace_file(str(tmp_path), relative, 100)


def test_a_missing_workspace_file_says_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"^there is no answer\.json in the workspace$"):
        read_workspace_file(str(tmp_path), "answer.json", 100)


# ---- grade_main ------------------------------------------------------------------------------


def _run_grader(
    tmp_path: Path, body: str, split: str = "validation"
) -> subprocess.CompletedProcess[str]:
    """Run a grader script whose module body is `body`, beside the kit, as rdbench runs one:
    `python3 score.py --workspace W` with the split on stdin."""
    grader = tmp_path / "grader"
    grader.mkdir()
    (grader / "rdbench_grading.py").write_bytes(KIT.read_bytes())
    (grader / "score.py").write_text(body)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return subprocess.run(
        [sys.executable, str(grader / "score.py"), "--workspace", str(workspace)],
        input=split, capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path,
    )  # fmt: skip


def _verdict(run: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert run.returncode == 0, run.stderr
    verdict: dict[str, object] = json.loads(run.stdout.strip().splitlines()[-1])
    return verdict


def test_grade_main_passes_split_and_workspace_and_emits(tmp_path: Path) -> None:
    run = _run_grader(tmp_path, """
import os
from rdbench_grading import emit, grade_main

def grade(split, workspace):
    emit(1.5, valid=True, message=split, details={"workspace": workspace})

grade_main(grade)
""")
    verdict = _verdict(run)
    assert verdict["raw_score"] == 1.5 and verdict["valid"] is True
    assert verdict["message"] == "validation"
    assert verdict["details"] == {"workspace": str(tmp_path / "workspace")}


def test_grade_main_turns_an_artifact_error_into_an_invalid_verdict(tmp_path: Path) -> None:
    run = _run_grader(tmp_path, """
import os
from rdbench_grading import grade_main, read_workspace_file

def grade(split, workspace):
    read_workspace_file(workspace, "model.pt", 100)
    raise AssertionError("unreachable")

grade_main(grade)
""", split="test")
    verdict = _verdict(run)
    assert verdict["valid"] is False and verdict["raw_score"] is None
    assert verdict["message"] == "there is no model.pt in the workspace"
    assert verdict["details"] == {"split": "test"}


def test_grade_main_gives_a_closed_scratch_folder_and_removes_it(tmp_path: Path) -> None:
    run = _run_grader(tmp_path, """
import os, stat
from rdbench_grading import emit, grade_main

def grade(split, workspace, scratch):
    open(os.path.join(scratch, "hidden.npy"), "w").close()
    mode = stat.S_IMODE(os.stat(scratch).st_mode)
    emit(0.0, valid=True, message="ok", details={"scratch": scratch, "mode": mode})

grade_main(grade, scratch="demo-grade")
""")
    details = _verdict(run)["details"]
    assert isinstance(details, dict)
    assert os.path.basename(details["scratch"]).startswith("demo-grade-")
    assert details["mode"] == 0o711  # the agent may enter it, not list it
    assert not os.path.lexists(details["scratch"])


def test_a_grade_that_emits_nothing_is_a_grader_bug(tmp_path: Path) -> None:
    run = _run_grader(tmp_path, """
from rdbench_grading import grade_main
grade_main(lambda split, workspace: None)
""")
    assert run.returncode == 1
    assert "without a verdict" in run.stderr
    assert '"valid"' not in run.stdout


# ---- running the agent's code ---------------------------------------------------------------


def test_agent_processes_run_as_the_agent_with_a_clean_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pwd

    from rdbench import grading_kit

    agent = pwd.struct_passwd(("agent", "x", 1234, 1235, "", "/home/agent", "/bin/sh"))
    monkeypatch.setattr(grading_kit, "_agent_identity", lambda: agent)
    monkeypatch.setattr(grading_kit.os, "geteuid", lambda: 0)
    monkeypatch.setenv("GRADER_SECRET", "split=test")
    identity, env = grading_kit.agent_process_args("/scratch", {"OMP_NUM_THREADS": "1"})
    assert identity == {"user": 1234, "group": 1235, "extra_groups": []}
    assert env["HOME"] == "/home/agent" and env["USER"] == "agent"
    assert env["OMP_NUM_THREADS"] == "1"
    assert "GRADER_SECRET" not in env  # nothing of the grader's environment passes


# ---- timing helpers --------------------------------------------------------------------------


def test_runs_take_the_allowed_cores_in_turn() -> None:
    assert [pinned_core(turn, [3, 1]) for turn in range(5)] == [1, 3, 1, 3, 1]
    assert pinned_core(0) in os.sched_getaffinity(0)


def test_which_program_goes_first_alternates() -> None:
    assert [alternated(repeat, "start", "agent") for repeat in range(3)] == [
        ("start", "agent"),
        ("agent", "start"),
        ("start", "agent"),
    ]


def test_fastest_of_n_is_floored() -> None:
    assert fastest([3.0, 1.5, 2.0]) == 1.5
    assert fastest([0.001, 0.5], floor=0.01) == 0.01
    with pytest.raises(ValueError, match="at least one"):
        fastest([])


def test_median_ratio_pairs_the_runs_of_a_repeat() -> None:
    # one disturbed repeat (the third) moves one ratio, not the median
    assert median_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 1.0]) == 2.0
    assert median_ratio([1.0], [0.0], floor=1e-4) == pytest.approx(1e4)
    with pytest.raises(ValueError, match=r"shorter|longer"):
        median_ratio([1.0, 2.0], [1.0])


def test_the_kit_runs_on_the_standard_library_alone() -> None:
    text = KIT.read_text()
    assert "import rdbench" not in text and "structlog" not in text
    assert stat.S_ISREG(KIT.stat().st_mode)
