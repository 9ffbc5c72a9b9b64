"""Checks of the file channel: round trips (binary, text, large, folders), who owns what is
written, and the typed errors of a missing path or a file past `max_bytes`."""

from __future__ import annotations

import io
import random
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from rdbench.sandbox.base import SandboxFileNotFound, SandboxOutputLimit
from rdbench.sandbox.conformance.checks import CheckFailed, Context, check, expect, said


@check("files")
def a_binary_file_round_trips(ctx: Context) -> None:
    """Bytes written with write_file (parent folders made) read back the same with read_file,
    by a relative path (in the agent's home) or an absolute one."""
    data = bytes(range(256)) * 100
    ctx.sandbox.write_file("nested/dir/blob.bin", data)
    back = ctx.sandbox.read_file("/home/agent/nested/dir/blob.bin")
    expect(back == data, f"{len(data)} bytes written, {len(back)} different ones read back")


@check("files")
def written_files_belong_to_the_agent_and_commands_see_them(ctx: Context) -> None:
    """A file written with write_file is owned by the agent, and commands see and change
    it."""
    ctx.sandbox.write_file("owned/blob.bin", b"data")
    owner = ctx.sandbox.exec(["stat", "-c", "%U", "owned/blob.bin"])
    expect(owner.stdout.strip() == "agent", f"its owner is {owner.stdout.strip() or said(owner)}")
    appended = ctx.sandbox.exec(["sh", "-c", "echo more >> owned/blob.bin"])
    expect(appended.ok, f"the agent cannot append to it: {said(appended)}")
    back = ctx.sandbox.read_file("owned/blob.bin")
    expect(back == b"datamore\n", f"after a command appended to it, it reads {back!r}")


@check("files")
def text_is_written_as_utf8_and_replaced(ctx: Context) -> None:
    """Text is written as UTF-8, and writing a file again replaces it."""
    ctx.sandbox.write_file("note.txt", "first ✓ and more")
    ctx.sandbox.write_file("note.txt", "second ✓")
    back = ctx.sandbox.read_file("note.txt")
    expect(back == "second ✓".encode(), f"read back {back!r}")


@check("files")
def a_large_file_round_trips(ctx: Context) -> None:
    """A 50 MB file round-trips, and commands see its full size."""
    data = random.randbytes(50 * 1024 * 1024)
    ctx.sandbox.write_file("large.bin", data)
    try:
        back = ctx.sandbox.read_file("large.bin")
        expect(back == data, f"{len(data)} bytes written, {len(back)} different ones read back")
        size = ctx.sandbox.exec(["stat", "-c", "%s", "large.bin"]).stdout.strip()
        expect(size == str(len(data)), f"commands see a file of {size or 'no'} bytes")
    finally:
        ctx.sandbox.exec(["rm", "-f", "large.bin"], user="root")


@check("files")
def a_file_written_for_root_is_roots(ctx: Context) -> None:
    """A file written with write_file(..., user="root") is owned by root."""
    write: Any = ctx.sandbox.write_file
    write("root-owned.txt", "x", user="root")
    owner = ctx.sandbox.exec(["stat", "-c", "%U", "root-owned.txt"]).stdout.strip()
    expect(owner == "root", f"its owner is {owner or 'unknown'!r}")


@check("files")
def reading_a_missing_file_is_a_typed_error(ctx: Context) -> None:
    """Reading a missing file raises SandboxFileNotFound (a FileNotFoundError)."""
    for path in ("/home/agent/does-not-exist.txt", "/nowhere/at/all"):
        try:
            ctx.sandbox.read_file(path)
        except SandboxFileNotFound:
            continue
        except Exception as error:
            raise CheckFailed(f"reading missing {path} raised {type(error).__name__} "
                              f"({error}), not SandboxFileNotFound") from error  # fmt: skip
        raise CheckFailed(f"reading missing {path} raised nothing")


@check("files")
def reading_past_max_bytes_is_a_typed_error(ctx: Context) -> None:
    """read_file(path, max_bytes=n) returns a file of n bytes and raises SandboxOutputLimit
    for a larger one."""
    ctx.sandbox.write_file("ten.txt", "0123456789")
    read: Any = ctx.sandbox.read_file
    back = read("ten.txt", max_bytes=10)
    expect(back == b"0123456789", f"max_bytes=10 read back {back!r}")
    try:
        read("ten.txt", max_bytes=9)
    except SandboxOutputLimit:
        return
    except Exception as error:
        raise CheckFailed(f"a 10-byte file read with max_bytes=9 raised {type(error).__name__} "
                          f"({error}), not SandboxOutputLimit") from error  # fmt: skip
    raise CheckFailed("a 10-byte file read with max_bytes=9 raised nothing")


@check("files")
def a_folder_round_trips_through_put_dir_and_get_dir(ctx: Context) -> None:
    """A host folder copied in with put_dir is the agent's to run and change, and get_dir
    brings it back as a gzip tar with what was made inside."""
    with tempfile.TemporaryDirectory(prefix="rdbench-conformance-") as scratch:
        source = Path(scratch) / "source"
        (source / "sub" / "deeper").mkdir(parents=True)
        (source / "train.py").write_text("print('hi')\n")
        (source / "sub" / "data.bin").write_bytes(bytes(range(256)))
        (source / "sub" / "deeper" / "empty.txt").write_text("")
        ctx.sandbox.exec(["mkdir", "-p", "project"]).check()
        ctx.sandbox.put_dir(str(source), "/home/agent/project")
        ran = ctx.sandbox.exec(["python3", "project/train.py"])
        expect(ran.stdout == "hi\n", f"the copied script ran with {said(ran)}")
        made = ctx.sandbox.exec(["touch", "project/sub/made-inside"])
        expect(made.ok, f"the agent cannot write in the copied folder: {said(made)}")
        archive = ctx.sandbox.get_dir("/home/agent/project")
        target = Path(scratch) / "back"
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = set(tar.getnames())
            tar.extractall(target, filter="data")
        missing = {"train.py", "sub/data.bin", "sub/deeper/empty.txt", "sub/made-inside"} - names
        expect(not missing, f"get_dir's archive lacks {sorted(missing)}")
        expect((target / "sub" / "data.bin").read_bytes() == bytes(range(256)),
               "sub/data.bin came back changed")  # fmt: skip


@check("files")
def get_dir_of_a_missing_folder_is_a_typed_error(ctx: Context) -> None:
    """get_dir of a missing folder raises SandboxFileNotFound."""
    try:
        ctx.sandbox.get_dir("/home/agent/no-such-folder")
    except SandboxFileNotFound:
        return
    except Exception as error:
        raise CheckFailed(f"it raised {type(error).__name__} ({error}), not "
                          "SandboxFileNotFound") from error  # fmt: skip
    raise CheckFailed("it raised nothing")
