"""Normalization, verdict parsing and the grading kit's file helpers, without a sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rdbench.grading import GradingError, normalize, parse_verdict
from rdbench.task import Scoring


def _scoring(start: float, reference: float, direction: str = "higher") -> Scoring:
    return Scoring(metric="m", direction=direction, start=start, reference=reference)  # type: ignore[arg-type]


def test_start_is_zero_reference_is_one() -> None:
    scoring = _scoring(0.7, 0.9)
    assert normalize(0.7, scoring) == 0.0
    assert normalize(0.9, scoring) == pytest.approx(1.0)
    assert normalize(0.8, scoring) == pytest.approx(0.5)


def test_below_start_clipped_above_reference_kept() -> None:
    scoring = _scoring(0.7, 0.9)
    assert normalize(0.5, scoring) == 0.0
    assert normalize(1.0, scoring) == pytest.approx(1.5)


def test_lower_is_better_metric_normalizes_the_same_way() -> None:
    scoring = _scoring(2.0, 1.0, "lower")
    assert normalize(1.5, scoring) == pytest.approx(0.5)
    assert normalize(3.0, scoring) == 0.0
    assert normalize(0.5, scoring) == pytest.approx(1.5)


def test_missing_or_nan_score_is_zero() -> None:
    assert normalize(None, _scoring(0, 1)) == 0.0
    assert normalize(float("nan"), _scoring(0, 1)) == 0.0


def test_verdict_is_the_last_json_line() -> None:
    out = 'training...\n{"not": "it"}\n{"raw_score": 0.8, "valid": true, "message": "ok"}\n'
    assert parse_verdict(out)["raw_score"] == 0.8


def test_no_verdict_is_a_grading_error() -> None:
    with pytest.raises(GradingError, match="no JSON verdict"):
        parse_verdict("Traceback (most recent call last): ...")


def test_fresh_workspaces_give_each_run_a_new_plain_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import os
    import pwd
    import stat

    from rdbench import grading_kit
    from rdbench.grading_kit import FreshWorkspaces

    # No host user `agent` is assumed, and nothing outside tmp_path is touched: the kit's
    # identity lookup answers with a uid we choose, its scratch places are a folder here, and
    # the host's System V IPC objects are left alone.
    agent_uid = 2**31 - 7
    identity = pwd.struct_passwd(("agent", "x", agent_uid, agent_uid, "", "/home/agent", ""))
    monkeypatch.setattr(grading_kit, "_agent_identity", lambda: identity)
    monkeypatch.setattr(grading_kit, "SCRATCH_ROOTS", (str(tmp_path / "tmp"),))
    monkeypatch.setattr(grading_kit.shutil, "which", lambda name: None)
    (tmp_path / "tmp").mkdir()
    workspace = tmp_path / "home"
    (workspace / "data" / "deep").mkdir(parents=True)
    (workspace / "kernel.py").write_text("kept")
    (workspace / "data" / "input.npz").write_bytes(b"\x00kept")
    (workspace / "run.sh").write_text("kept")
    os.chmod(workspace / "run.sh", 0o4755)
    (workspace / "link").symlink_to("kernel.py")
    os.mkfifo(workspace / "fifo")
    os.utime(workspace / "data", ns=(123, 456))
    xattrs = True
    try:
        os.setxattr(workspace / "data", "user.answers", b"submitted")
    except OSError:
        xattrs = False  # the file system keeps none; the times still carry data
    as_root = os.geteuid() == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o711)
    workspaces = FreshWorkspaces(str(workspace), str(scratch))
    if as_root:
        assert (os.stat(workspace).st_uid, stat.S_IMODE(os.stat(workspace).st_mode)) == (0, 0o700)
    assert stat.S_IMODE(os.stat(workspaces.pristine).st_mode) == 0o700

    seen = []
    for _ in range(2):
        with workspaces.fresh() as copy:
            seen.append(copy)
            root = Path(copy)
            found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
            assert found == ["data", "data/deep", "data/input.npz", "kernel.py", "link", "run.sh"]
            assert (root / "data" / "input.npz").read_bytes() == b"\x00kept"
            assert os.readlink(root / "link") == "kernel.py"
            assert stat.S_IMODE(os.stat(root / "run.sh").st_mode) == 0o755  # no set-id bit
            assert os.stat(root / "data").st_mtime_ns != 456
            if xattrs:
                assert os.listxattr(root / "data") == []
            if as_root:
                assert {os.lstat(p).st_uid for p in [root, *root.rglob("*")]} == {agent_uid}
            # what a run leaves, everywhere it can write
            (root / "cache.bin").write_text("answers")
            os.utime(root / "data" / "deep", ns=(7, 7))
            if xattrs:
                with contextlib.suppress(OSError):
                    os.setxattr(root / "data", "user.answers", b"answers")
            left = tmp_path / "tmp" / "left.bin"
            left.write_text("answers")
            if as_root:
                os.chown(left, agent_uid, agent_uid)
        assert not os.path.exists(copy)
        assert not as_root or not left.exists()
    assert seen[0] != seen[1]


def test_fresh_workspaces_copy_and_remove_a_tree_deeper_than_the_recursion_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import pwd
    import sys

    from rdbench import grading_kit
    from rdbench.grading_kit import FreshWorkspaces

    agent_uid = 2**31 - 7  # as above
    identity = pwd.struct_passwd(("agent", "x", agent_uid, agent_uid, "", "/home/agent", ""))
    monkeypatch.setattr(grading_kit, "_agent_identity", lambda: identity)
    monkeypatch.setattr(grading_kit, "SCRATCH_ROOTS", ())
    depth = DEEP  # under Python's default recursion limit of 1,000, set again below
    workspace = tmp_path / "home"
    deepest = str(workspace)
    os.mkdir(deepest)
    for _ in range(depth):  # os.makedirs recurses too
        deepest += "/d"
        os.mkdir(deepest)
    Path(deepest, "bottom.txt").write_text("kept")
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o711)
    limit = sys.getrecursionlimit()  # conftest raises it for pytest's own clean-up
    try:
        sys.setrecursionlimit(1000)
        workspaces = FreshWorkspaces(str(workspace), str(scratch))
        with workspaces.fresh() as copy:
            assert Path(copy + "/d" * depth, "bottom.txt").read_text() == "kept"
        assert not os.path.exists(copy)
    finally:
        sys.setrecursionlimit(limit)
        # pytest's own clean-up of tmp_path recurses: leave no deep tree behind
        for folder in (workspace, scratch):
            grading_kit._remove_folder(str(folder))
    assert not workspace.exists() and not scratch.exists()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5004389815627743, "0.500"),  # one positive row of tabular-credit's validation split
        (0.4997313272434175, "0.500"),  # one negative row
        (0.123456789, "0.123"),
        (-150.23, "-150"),
        (1234.5, "1230"),
        (99.95, "100"),
        (1.0, "1.00"),
        (0.0, "0.00"),
        (2.5e9, "2.50e+09"),
        (1.23456e-7, "1.23e-07"),
        (float("inf"), "inf"),
    ],
)
def test_shown_keeps_three_significant_digits(value: float, text: str) -> None:
    from rdbench.grading_kit import shown

    assert shown(value) == text


DEEP = 1500  # deeper than Python's recursion limit


def _deep_tree(root: Path) -> Path:
    """A chain of DEEP folders under `root` (made by the shell: pathlib would recurse)."""
    import subprocess

    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sh", "-c", f"cd {root} && for i in $(seq {DEEP}); do mkdir d && cd d; "
                    "done && echo x > leaf"], check=True)  # fmt: skip
    return root / "/".join(["d"] * DEEP) / "leaf"


def test_walk_tree_walks_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    from rdbench.grading_kit import remove_tree, walk_tree

    leaf = _deep_tree(tmp_path / "deep")
    (tmp_path / "deep" / "skipped").mkdir()
    (tmp_path / "deep" / "skipped" / "inside").write_text("x")
    seen = []
    for parent, dirs, files in walk_tree(str(tmp_path / "deep")):
        if "skipped" in dirs:
            dirs.remove("skipped")
        seen += [f"{parent}/{name}" for name in files]
    assert seen == [str(leaf)]
    remove_tree(str(tmp_path / "deep"))
    assert not (tmp_path / "deep").exists()


@pytest.fixture
def artifact_kit(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """The grading kit with an `agent` identity of a uid no one uses and its scratch places in
    a folder of this test's (world-enterable, so that uid may work in it), and that folder."""
    import pwd
    import shutil
    import tempfile

    from rdbench import grading_kit

    agent_uid = 2**31 - 9
    identity = pwd.struct_passwd(("agent", "x", agent_uid, agent_uid, "", "/", ""))
    monkeypatch.setattr(grading_kit, "_agent_identity", lambda: identity)
    scratch = Path(tempfile.mkdtemp(prefix="rdbench-artifact-test-"))
    scratch.chmod(0o711)
    (scratch / "tmp").mkdir(mode=0o1777)
    monkeypatch.setattr(grading_kit, "SCRATCH_ROOTS", (str(scratch / "tmp"),))
    monkeypatch.setattr(grading_kit.shutil, "which", lambda name: None)
    try:
        yield grading_kit, scratch
    finally:
        shutil.rmtree(scratch)


def _writer(body: str) -> list[str]:
    """A shell command (the fake agent user can run /bin/sh, not the test's Python) doing
    `body` with the output path as $1."""
    return ["/bin/sh", "-c", body, "sh"]


def test_run_for_artifact_returns_the_file_and_removes_its_folder(
    artifact_kit: tuple[Any, Path],
) -> None:
    kit, scratch = artifact_kit
    output = str(scratch / "out" / "model.pt2")
    run, data = kit.run_for_artifact(
        [*_writer('printf graph > "$1"'), output],
        cwd=str(scratch), output=output, timeout=60, limit=100,
    )
    assert run.ok and data == b"graph"
    assert not (scratch / "out").exists()


@pytest.mark.parametrize(("body", "expected"), [
    ('ln -s /etc/hostname "$1"', "could not be opened"),
    ('mkfifo "$1"', "not a regular file"),
    ('head -c 101 /dev/zero > "$1"', "larger than 100 bytes"),
    ("true", "was not written"),
    ("echo no model >&2; exit 3", "exit code 3: no model"),
])
def test_run_for_artifact_refuses_what_is_not_a_modest_plain_file(
    artifact_kit: tuple[Any, Path], body: str, expected: str
) -> None:
    kit, scratch = artifact_kit
    output = str(scratch / "out" / "model.pt2")
    with pytest.raises(kit.ArtifactError, match=expected) as raised:
        kit.run_for_artifact([*_writer(body), output], cwd=str(scratch), output=output,
                             timeout=60, limit=100)
    assert (raised.value.run is not None) == ("exit code" in expected)
    assert not (scratch / "out").exists()
