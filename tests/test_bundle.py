"""Bundles: `make_bundle` packs a real run (null and oracle on two toy tasks) with a manifest
that names every file's SHA-256, the tar is deterministic, and `open_bundle` refuses anything
that could write outside its folder or fill the disk."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from bundle_fixtures import TASK_IDS, ToyRun, toy_run
from typer.testing import CliRunner

from rdbench.bundle import (
    FIXED_MTIME,
    BundleError,
    file_sha256,
    make_bundle,
    open_bundle,
    write_bundle,
)
from rdbench.identity import task_content_hash
from rdbench.image import image_tag
from rdbench.submission import MANIFEST


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> ToyRun:
    return toy_run(tmp_path_factory)


@pytest.mark.docker
def test_manifest_names_the_run_its_tasks_image_and_every_file(run: ToyRun) -> None:
    with open_bundle(run.bundle) as bundle:
        manifest = bundle.manifest
        assert (manifest.name, manifest.agent_version, manifest.notes) == (
            "toy-submission", "1.2", "made by the tests")
        assert [agent.name for agent in manifest.agents] == ["null", "oracle"]
        assert {task.id: task.content_hash for task in manifest.tasks} == {
            task_id: task_content_hash(run.tasks[task_id].root) for task_id in TASK_IDS}
        assert manifest.image_tag == image_tag()
        assert manifest.image_hash == image_tag().partition(":")[2]
        assert (manifest.seeds, manifest.budgets, manifest.sandbox) == ([0], {"steps": 5},
                                                                         "docker")
        assert len(manifest.episodes) == 4
        assert sorted(entry.path for entry in manifest.files) == [
            name for name in bundle.files() if name != MANIFEST]
        for entry in manifest.files:
            original = run.folder / entry.path.split("/", 1)[1]
            assert entry.sha256 == file_sha256(original)
            assert entry.size == original.stat().st_size
        for episode_id in manifest.episodes:
            names = {entry.path.rsplit("/", 1)[1] for entry in manifest.files
                     if entry.path.startswith(f"episodes/{episode_id}/")}
            assert names == {"result.json", "transcript.jsonl", "workspace.tar.gz"}


@pytest.mark.docker
def test_episodes_read_back_with_their_results_and_files(run: ToyRun) -> None:
    with open_bundle(run.bundle) as bundle:
        episodes = bundle.episodes
        scores = {(episode.result.task_id, episode.result.agent): episode.result.normalized_score
                  for episode in episodes}
        assert scores == {("toy-a", "null"): 0.0, ("toy-a", "oracle"): 1.0,
                          ("toy-b", "null"): 0.0, ("toy-b", "oracle"): 1.0}
        for episode in episodes:
            assert episode.folder.name == episode.episode_id == episode.result.episode_id
            assert episode.transcript_path.read_bytes() == (
                run.folder / episode.episode_id / "transcript.jsonl").read_bytes()
            assert episode.workspace_path is not None and episode.workspace_path.is_file()
        assert bundle.sha256 == file_sha256(run.bundle)
        root = bundle.root
    assert not root.exists()


@pytest.mark.docker
def test_the_tar_is_sorted_with_fixed_times_and_repeats_byte_for_byte(
    run: ToyRun, tmp_path: Path
) -> None:
    with open_bundle(run.bundle) as bundle:
        files = {name: bundle.root / name for name in bundle.files() if name != MANIFEST}
        first = write_bundle(bundle.manifest, files, tmp_path / "one.tar.gz")
        second = write_bundle(bundle.manifest, dict(reversed(files.items())),
                              tmp_path / "two.tar.gz")
    assert first.read_bytes() == second.read_bytes() == run.bundle.read_bytes()
    with tarfile.open(run.bundle, "r:gz") as tar:
        members = tar.getmembers()
    assert [member.name for member in members] == sorted(member.name for member in members)
    assert {(member.mtime, member.uid, member.mode, member.type) for member in members} == {
        (FIXED_MTIME, 0, 0o644, tarfile.REGTYPE)}


@pytest.mark.docker
def test_an_unfinished_run_is_not_bundled(run: ToyRun, tmp_path: Path) -> None:
    copy = shutil.copytree(run.folder, tmp_path / "run")
    episode = next(path for path in copy.iterdir() if path.is_dir())
    (episode / "result.json").unlink()
    with pytest.raises(BundleError, match=r"1 episode\(s\) unfinished.*--resume"):
        make_bundle(copy, tmp_path / "b.tar.gz", name="x")
    assert not (tmp_path / "b.tar.gz").exists()


@pytest.mark.docker
def test_a_run_whose_task_changed_since_is_not_bundled(run: ToyRun, tmp_path: Path) -> None:
    copy = shutil.copytree(run.folder, tmp_path / "run")
    task = shutil.copytree(run.tasks["toy-a"].root, tmp_path / "toy-a")
    (task / "instructions.md").write_text("changed after the run\n")
    config = json.loads((copy / "run.json").read_text())
    config["tasks"] = [str(task) if name.endswith("/toy-a") else name
                       for name in config["tasks"]]
    (copy / "run.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="task toy-a changed since the run"):
        make_bundle(copy, tmp_path / "b.tar.gz", name="x")


@pytest.mark.docker
def test_submit_command_writes_a_bundle(run: ToyRun, tmp_path: Path) -> None:
    from rdbench.cli import app

    out = tmp_path / "mine.tar.gz"
    result = CliRunner().invoke(app, ["submit", str(run.folder), "-o", str(out),
                                      "--name", "cli-made", "--agent-version", "7"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "rdbench verify" in result.output
    with open_bundle(out) as bundle:
        assert (bundle.manifest.name, bundle.manifest.agent_version) == ("cli-made", "7")
        made = bundle.manifest.files
    with open_bundle(run.bundle) as original:
        assert made == original.manifest.files


# ---- unsafe bundles (no Docker needed) -------------------------------------------------------


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(("member", "message"), [
    (_file("episodes/../../escape.txt"), r"'episodes/\.\./\.\./escape\.txt' has a '\.\.' "),
    (_file("/tmp/rdbench-absolute.txt"), "'/tmp/rdbench-absolute.txt' has an absolute path"),
    (_link("manifest.json", tarfile.SYMTYPE), "'manifest.json' is a symbolic link"),
    (_link("episodes/e/result.json", tarfile.LNKTYPE), "'episodes/e/result.json' is a hard link"),
    (_link("dev", tarfile.CHRTYPE, ""), "'dev' is a device"),
    (_link("pipe", tarfile.FIFOTYPE, ""), "'pipe' is a fifo"),
], ids=["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_unsafe_members_are_refused_and_nothing_is_written(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    bundle = _tar(tmp_path / "bad.tar.gz", [_file("episodes/ok.txt"), member])
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle, scratch=scratch)
    assert list(scratch.iterdir()) == []  # the partial folder is removed
    assert not (tmp_path / "escape.txt").exists()


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    bundle = _tar(tmp_path / "many.tar.gz", [_file(f"f{number}") for number in range(11)])
    with pytest.raises(BundleError, match="more than 10 members"):
        open_bundle(bundle, max_members=10)
    with open_bundle(bundle, max_members=11) as opened:
        assert len(opened.files()) == 11


def test_too_many_bytes_are_refused_before_unpacking(tmp_path: Path) -> None:
    bundle = _tar(tmp_path / "big.tar.gz", [_file("big", size=4096)], data=b"\0" * 4096)
    with pytest.raises(BundleError, match="more than 4095 bytes"):
        open_bundle(bundle, max_bytes=4095)


def test_a_member_given_twice_is_refused(tmp_path: Path) -> None:
    bundle = _tar(tmp_path / "twice.tar.gz", [_file("manifest.json"), _file("./manifest.json")])
    with pytest.raises(BundleError, match="appears twice"):
        open_bundle(bundle)


def test_a_file_that_is_no_bundle_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar.gz"
    plain.write_text("not a tar")
    with pytest.raises(BundleError, match="not a readable bundle"):
        open_bundle(plain)
    with pytest.raises(BundleError, match="no such bundle file"):
        open_bundle(tmp_path / "missing.tar.gz")
    empty = _tar(tmp_path / "empty.tar.gz", [_file("x")])
    with open_bundle(empty) as opened, pytest.raises(BundleError, match=r"no manifest\.json"):
        _ = opened.manifest
