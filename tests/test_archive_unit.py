"""The archive helpers on the host: a sink that stops at its limit, the checks on a tarball
given to `rdbench grade`, host folders packed by GNU tar (links kept, nothing followed, no
recursion), a file sent as one tar member without being held in memory, and tar's exit read."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from rdbench.sandbox import hostdirs
from rdbench.sandbox.archive import (
    ArchiveSink,
    check_archive,
    export_outcome,
    file_as_tar_member,
    pack_folder,
    too_large,
    unpack_outcome,
)
from rdbench.sandbox.base import AGENT_UID, ArchiveError, ArchiveTooLarge


def make_tgz(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 3 if kind == tarfile.REGTYPE else 0
    return info


def test_sink_writes_up_to_its_limit_then_refuses() -> None:
    dest = io.BytesIO()
    sink = ArchiveSink(dest, max_bytes=10)
    assert sink.add(b"12345") and sink.add(b"67890")
    assert not sink.add(b"1")
    assert sink.over and dest.getvalue() == b"1234567890"
    assert not sink.add(b"")  # stays refused


def test_too_large_says_the_size_the_limit_and_how_to_fix_it() -> None:
    error = too_large("it uses 1024.0 MB of disk", 500 * 1024**2)
    assert isinstance(error, ArchiveError)
    assert "1024.0 MB" in str(error) and "limit of 500 MB" in str(error)
    assert "workspace_mb" in str(error) and "Delete" in str(error)


def test_a_sound_archive_with_an_absolute_symlink_passes_the_check(tmp_path: Path) -> None:
    check_archive(make_tgz(tmp_path / "ok.tar.gz", [
        member("answer.py"), member("venv/bin/python3", tarfile.SYMTYPE, "/usr/bin/python3"),
        member("same.py", tarfile.LNKTYPE, "answer.py"), member("pipe", tarfile.FIFOTYPE),
    ]))  # fmt: skip


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([member("../evil.py")], "outside the workspace"),
        ([member("/etc/evil")], "outside the workspace"),
        ([member("a/../../evil")], "outside the workspace"),
        ([member("hard", tarfile.LNKTYPE, "/etc/shadow")], "hard link"),
        ([member("hard", tarfile.LNKTYPE, "../../etc/shadow")], "hard link"),
        ([member("tty", tarfile.CHRTYPE)], "device node"),
        ([], "holds no files"),
    ],
)
def test_an_unsound_archive_is_refused_saying_why(
    tmp_path: Path, members: list[tarfile.TarInfo], says: str
) -> None:
    path = make_tgz(tmp_path / "bad.tar.gz", members)
    with pytest.raises(ArchiveError, match=says):
        check_archive(path)


def test_missing_empty_plain_and_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist"):
        check_archive(tmp_path / "nope.tar.gz")
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    with pytest.raises(ArchiveError, match="is empty"):
        check_archive(tmp_path / "empty.tar.gz")
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:
        tar.addfile(member("a.py"), io.BytesIO(b"xxx"))
    with pytest.raises(ArchiveError, match="not gzip-compressed"):
        check_archive(tmp_path / "plain.tar")
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"not a tar at all" * 100))
    with pytest.raises(ArchiveError, match="not a readable gzip tar"):
        check_archive(tmp_path / "text.gz")
    whole = make_tgz(tmp_path / "whole.tar.gz", [member("a.py")]).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError, match="not a readable gzip tar"):
        check_archive(tmp_path / "cut.tar.gz")


def test_pack_folder_keeps_links_special_files_and_deep_trees(tmp_path: Path) -> None:
    source = tmp_path / "ws"
    source.mkdir()
    (source / "answer.py").write_text("print(3)\n")
    os.link(source / "answer.py", source / "hard.py")
    (source / "abs").symlink_to("/etc/passwd")  # stored as a link, never read
    os.mkfifo(source / "pipe")
    with (source / "sparse").open("wb") as file:
        file.truncate(1024**3)
    deep = "/".join(["d"] * 1500)
    subprocess.run(["mkdir", "-p", deep], cwd=source, check=True)
    archive = tmp_path / "ws.tar.gz"
    pack_folder(source, archive)
    assert archive.stat().st_size < 1_000_000  # the 1 GiB hole was not expanded
    check_archive(archive)
    with tarfile.open(archive, "r|gz") as tar:
        kinds = {info.name: info for info in tar}
    assert kinds["abs"].issym() and kinds["abs"].linkname == "/etc/passwd"
    assert kinds["pipe"].isfifo()
    assert {kinds["hard.py"].islnk(), kinds["answer.py"].islnk()} == {True, False}
    assert kinds["sparse"].size == 1024**3
    assert deep in kinds
    assert not any(name.startswith(("./", "/")) for name in kinds)
    hostdirs.remove(source)  # as deep as it is
    assert not source.exists()


def test_pack_folder_of_no_folder_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="is not a folder"):
        pack_folder(tmp_path / "nope", tmp_path / "out.tar.gz")


def test_a_file_is_sent_as_one_tar_member_in_chunks(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(300_000))
    chunks = list(file_as_tar_member(source, "x.tar.gz"))
    assert max(len(chunk) for chunk in chunks) <= 1 << 16
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as tar:
        (info,) = tar.getmembers()
        assert (info.name, info.uid, info.mode) == ("x.tar.gz", AGENT_UID, 0o600)
        extracted = tar.extractfile(info)
        assert extracted is not None and extracted.read() == source.read_bytes()


def test_tar_exit_codes_are_read_as_what_they_mean() -> None:
    assert export_outcome(0, "", "/home/agent") == ""
    assert export_outcome(1, "tar: ./log: file changed as we read it\n", "/home/agent")
    note = export_outcome(2, "tar: ./secret: Cannot open: Permission denied\n"
                             "tar: Exiting with failure status due to previous errors\n",
                          "/home/agent")  # fmt: skip
    assert "secret" in note and "Exiting" not in note
    with pytest.raises(ArchiveError, match="not readable"):
        export_outcome(4, "", "/home/agent")
    with pytest.raises(ArchiveError, match="tar exit 2"):
        export_outcome(2, "tar: Unexpected EOF\n", "/home/agent")
    unpack_outcome(0, "")
    with pytest.raises(ArchiveError, match="could not be unpacked"):
        unpack_outcome(2, "tar: ../x: Member name contains '..'")
    assert not issubclass(ArchiveError, ArchiveTooLarge)


def test_host_temp_dirs_are_private_and_named_for_gc() -> None:
    folder = hostdirs.make_dir("unit")
    try:
        assert folder.name.startswith(f"rdbench-unit-{os.getpid()}-")
        assert folder.parent == Path("/var/tmp") and (folder.stat().st_mode & 0o777) == 0o700
    finally:
        hostdirs.remove(folder)
    assert not folder.exists()
