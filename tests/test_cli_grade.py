"""`rdbench grade PATH --task T`: a folder is archived by the host's GNU tar and graded; an
archive is checked, then unpacked only inside the grading sandbox. A bad input is one clear
line and a non-zero exit, with nothing left behind."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import TOY_TASK
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.sandbox import hostdirs


def grade(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["grade", str(path), "--task", str(TOY_TASK)])
    return result.exit_code, result.output


def tgz(path: Path, name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        info.size = 9 if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(b"print(3)\n") if kind == tarfile.REGTYPE else None)
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an archive")
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:
        tar.addfile(tarfile.TarInfo("a"), io.BytesIO(b""))
    return {
        "missing": (tmp_path / "nope", "does not exist"),
        "empty": (tmp_path / "empty.tar.gz", "is empty"),
        "not gzip": (tmp_path / "notes.txt", "not gzip-compressed"),
        "plain tar": (tmp_path / "plain.tar", "not gzip-compressed"),
        "dot-dot": (tgz(tmp_path / "up.tar.gz", "../answer.py"), "outside the workspace"),
        "absolute": (tgz(tmp_path / "abs.tar.gz", "/answer.py"), "outside the workspace"),
        "hard link": (tgz(tmp_path / "hard.tar.gz", "x", tarfile.LNKTYPE, "/etc/shadow"),
                      "hard link"),
    }  # fmt: skip


def test_bad_inputs_are_one_clear_line_and_a_failure(tmp_path: Path) -> None:
    before = set(Path("/var/tmp").glob(f"rdbench-*-{os.getpid()}-*"))
    for what, (path, says) in bad_inputs(tmp_path).items():
        code, output = grade(path)
        assert code == 1, (what, output)
        assert says in output and "Traceback" not in output, (what, output)
        assert len(output.strip().splitlines()) <= 2, (what, output)  # one line, maybe wrapped
    assert set(Path("/var/tmp").glob(f"rdbench-*-{os.getpid()}-*")) == before


@pytest.mark.docker
def test_a_folder_with_links_and_a_deep_tree_is_graded(tmp_path: Path, sandbox_image: str) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "answer.py").write_text("print(4)\n")
    (folder / "python3").symlink_to("/usr/bin/python3")
    (folder / "outside").symlink_to("/etc/shadow")  # stored as a link, never read on the host
    subprocess.run(["mkdir", "-p", "/".join(["d"] * 1500)], cwd=folder, check=True)
    try:
        code, output = grade(folder)
    finally:
        hostdirs.remove(folder)  # pytest's own clean-up would recurse too deep
    assert code == 0, output
    verdict = json.loads(output)
    assert verdict["valid"] and verdict["raw_score"] == 4.0
    assert not list(Path("/var/tmp").glob(f"rdbench-grade-{os.getpid()}-*"))
