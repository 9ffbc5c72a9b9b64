"""Verifying bundles made from a real run (null and oracle on two toy tasks): an untouched
bundle verifies; each tampering is rejected with a finding that names it.

The hash and task tests run without the episode checks (`checks=[]`): what they pin down is
the orchestrator's own findings, and they stay fast. The tests of a cheat who also re-hashes
the manifest need the episode checks (re-grading, consistency) of rdbench.verify_checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bundle_fixtures import ToyRun, copy_into, edit_json, episode_of, rehashed, retamper, toy_run
from typer.testing import CliRunner

from rdbench.image import image_inputs_hash, image_tag
from rdbench.submission import Finding, Manifest, VerifiedReport
from rdbench.verify import verify_bundle

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> ToyRun:
    return toy_run(tmp_path_factory)


def _verify(run: ToyRun, bundle: Path, *, checks: bool = False) -> VerifiedReport:
    return verify_bundle(bundle, tasks=run.tasks, backend="docker",
                         checks=None if checks else [])


def _rejects(report: VerifiedReport, code: str) -> list[Finding]:
    assert report.verdict == "rejected", report.findings
    found = [finding for finding in report.findings
             if finding.code == code and finding.severity == "reject"]
    assert found, f"no {code} finding in {report.findings}"
    return found


def test_an_untouched_bundle_verifies(run: ToyRun) -> None:
    report = _verify(run, run.bundle, checks=True)
    assert (report.verdict, report.findings) == ("verified", [])
    assert report.name == "toy-submission"
    assert report.bundle == "bundle.tar.gz"
    assert len(report.bundle_sha256) == 64
    assert (report.verifier_image_tag, report.verifier_image_hash) == (image_tag(),
                                                                       image_inputs_hash())


def test_an_edited_score_with_a_stale_hash_is_rejected_naming_the_file(
    run: ToyRun, tmp_path: Path
) -> None:
    def edit(root: Path, manifest: Manifest) -> Manifest:
        edit_json(root / "episodes" / episode_of(manifest, "toy-a", "null") / "result.json",
                  normalized_score=1.0, raw_score=5.0)
        return manifest

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", edit))
    [finding] = _rejects(report, "file-modified")
    assert finding.path is not None and finding.path.endswith("/result.json")
    assert finding.episode_id is not None and finding.episode_id.startswith("toy-a__null__")
    assert finding.path in finding.message


def test_an_edited_score_with_a_rehashed_manifest_is_rejected_by_the_regrade(
    run: ToyRun, tmp_path: Path
) -> None:
    target = ""

    def edit(root: Path, manifest: Manifest) -> Manifest:
        nonlocal target
        target = episode_of(manifest, "toy-a", "null")
        edit_json(root / "episodes" / target / "result.json", normalized_score=1.0,
                  raw_score=5.0)
        return rehashed(root, manifest)

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", edit), checks=True)
    assert report.verdict == "rejected"
    assert not [finding for finding in report.findings if finding.code == "file-modified"]
    assert {finding.episode_id for finding in report.findings
            if finding.severity == "reject"} == {target}


def test_a_swapped_workspace_archive_is_rejected_naming_both(
    run: ToyRun, tmp_path: Path
) -> None:
    def swap(root: Path, manifest: Manifest) -> Manifest:
        null = root / "episodes" / episode_of(manifest, "toy-a", "null") / "workspace.tar.gz"
        oracle = root / "episodes" / episode_of(manifest, "toy-a", "oracle") / "workspace.tar.gz"
        copy_into(oracle, null)
        return manifest

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", swap))
    [finding] = _rejects(report, "file-modified")
    assert finding.path is not None and finding.path.endswith("/workspace.tar.gz")
    assert finding.episode_id is not None and finding.episode_id.startswith("toy-a__null__")


def test_a_swapped_workspace_with_a_rehashed_manifest_is_rejected_by_the_regrade(
    run: ToyRun, tmp_path: Path
) -> None:
    target = ""

    def swap(root: Path, manifest: Manifest) -> Manifest:
        nonlocal target
        target = episode_of(manifest, "toy-a", "oracle")
        null = root / "episodes" / episode_of(manifest, "toy-a", "null") / "workspace.tar.gz"
        copy_into(null, root / "episodes" / target / "workspace.tar.gz")
        return rehashed(root, manifest)

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", swap), checks=True)
    assert report.verdict == "rejected"
    assert target in {finding.episode_id for finding in report.findings
                      if finding.severity == "reject"}


def test_a_changed_task_hash_in_the_manifest_is_rejected_naming_the_task(
    run: ToyRun, tmp_path: Path
) -> None:
    def change(root: Path, manifest: Manifest) -> Manifest:
        tasks = [task.model_copy(update={"content_hash": "0" * 64}) if task.id == "toy-b"
                 else task for task in manifest.tasks]
        return manifest.model_copy(update={"tasks": tasks})

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", change))
    found = _rejects(report, "task-hash-mismatch")
    assert [finding.message for finding in found if finding.episode_id is None] == [
        next(finding.message for finding in found if finding.episode_id is None)]
    assert all("task toy-b" in finding.message for finding in found)
    # the task's episodes recorded the real hash: each disagrees with the manifest
    assert {str(finding.episode_id).split("__")[1] for finding in found
            if finding.episode_id} == {"null", "oracle"}


def test_a_task_that_is_not_installed_is_rejected(run: ToyRun) -> None:
    report = verify_bundle(run.bundle, tasks={"toy-a": run.tasks["toy-a"]}, checks=[])
    [finding] = _rejects(report, "task-unknown")
    assert "task toy-b is not installed" in finding.message


def test_a_removed_transcript_is_rejected_naming_it(run: ToyRun, tmp_path: Path) -> None:
    def remove(root: Path, manifest: Manifest) -> Manifest:
        (root / "episodes" / episode_of(manifest, "toy-b", "oracle") / "transcript.jsonl"
         ).unlink()
        return manifest

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", remove))
    missing = _rejects(report, "file-missing")
    assert [finding.path for finding in missing] == [
        f"episodes/{missing[0].episode_id}/transcript.jsonl"]
    assert str(missing[0].episode_id).startswith("toy-b__oracle__")
    _rejects(report, "transcript-missing")


def test_a_removed_transcript_and_its_manifest_entry_are_still_rejected(
    run: ToyRun, tmp_path: Path
) -> None:
    def remove(root: Path, manifest: Manifest) -> Manifest:
        (root / "episodes" / episode_of(manifest, "toy-b", "oracle") / "transcript.jsonl"
         ).unlink()
        return rehashed(root, manifest)

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", remove))
    [finding] = _rejects(report, "transcript-missing")
    assert finding.path == f"episodes/{finding.episode_id}/transcript.jsonl"
    assert not [finding for finding in report.findings if finding.code == "file-missing"]


def test_an_edited_transcript_is_rejected_naming_it(run: ToyRun, tmp_path: Path) -> None:
    def edit(root: Path, manifest: Manifest) -> Manifest:
        path = root / "episodes" / episode_of(manifest, "toy-a", "oracle") / "transcript.jsonl"
        lines = path.read_text().splitlines()
        grade = next(index for index, line in enumerate(lines)
                     if json.loads(line)["type"] == "grade")
        event = json.loads(lines[grade])
        event["normalized_score"] = 3.0
        lines[grade] = json.dumps(event)
        path.write_text("\n".join(lines) + "\n")
        return manifest

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", edit))
    [finding] = _rejects(report, "file-modified")
    assert finding.path is not None and finding.path.endswith("/transcript.jsonl")
    assert str(finding.episode_id).startswith("toy-a__oracle__")


def test_a_left_out_episode_is_rejected(run: ToyRun, tmp_path: Path) -> None:
    def leave_out(root: Path, manifest: Manifest) -> Manifest:
        dropped = episode_of(manifest, "toy-b", "null")
        shutil.rmtree(root / "episodes" / dropped)
        kept = [episode for episode in manifest.episodes if episode != dropped]
        return rehashed(root, manifest.model_copy(update={"episodes": kept}))

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", leave_out))
    [finding] = _rejects(report, "episode-missing")
    assert "task toy-b, agent null, seed 0" in finding.message


def test_an_extra_file_is_rejected(run: ToyRun, tmp_path: Path) -> None:
    def add(root: Path, manifest: Manifest) -> Manifest:
        folder = root / "episodes" / manifest.episodes[0]
        (folder / "notes.txt").write_text("not in the manifest")
        return manifest

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", add))
    [finding] = _rejects(report, "file-extra")
    assert finding.path is not None and finding.path.endswith("/notes.txt")


def test_a_manifest_naming_paths_outside_the_bundle_is_rejected(
    run: ToyRun, tmp_path: Path
) -> None:
    from rdbench.submission import FileEntry

    def point_outside(root: Path, manifest: Manifest) -> Manifest:
        outside = FileEntry(path="../../etc/hostname", size=1, sha256="0" * 64)
        return manifest.model_copy(update={"files": [*manifest.files, outside],
                                           "episodes": [*manifest.episodes, "../.."]})

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", point_outside))
    found = _rejects(report, "manifest-path-unsafe")
    assert sorted(str(finding.path) for finding in found) == ["../..", "../../etc/hostname"]
    assert not [finding for finding in report.findings if finding.code == "file-missing"]


def test_verify_command_prints_the_verdict_writes_the_report_and_exits_1_when_rejected(
    run: ToyRun, tmp_path: Path
) -> None:
    from rdbench.cli import app

    bundle = Path(shutil.copyfile(run.bundle, tmp_path / "sub.tar.gz"))
    task_dirs = [arg for task in run.tasks.values() for arg in ("--task-dir", str(task.root))]
    ok = CliRunner().invoke(app, ["verify", str(bundle), "--sandbox", "docker", *task_dirs])
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert ok.output.startswith("verified: toy-submission (0 finding(s))")
    report = VerifiedReport.model_validate_json((tmp_path / "sub.verified.json").read_text())
    assert report.verdict == "verified"

    def edit(root: Path, manifest: Manifest) -> Manifest:
        (root / "episodes" / manifest.episodes[0] / "transcript.jsonl").write_text("")
        return manifest

    bad = retamper(run.bundle, tmp_path / "bad.tar.gz", edit)
    out = tmp_path / "bad-report.json"
    rejected = CliRunner().invoke(app, ["verify", str(bad), "-o", str(out), "--sandbox",
                                        "docker", *task_dirs])
    assert rejected.exit_code == 1
    assert rejected.output.startswith("rejected: toy-submission")
    assert "1. [reject] file-modified: " in rejected.output
    assert VerifiedReport.model_validate_json(out.read_text()).verdict == "rejected"


def test_verify_command_refuses_an_unsafe_bundle(tmp_path: Path) -> None:
    import io
    import tarfile

    from rdbench.cli import app

    bundle = tmp_path / "evil.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    result = CliRunner().invoke(app, ["verify", str(bundle), "--sandbox", "docker"])
    assert result.exit_code == 1
    assert "rejected:" in result.stderr and "'../evil' has a '..' component" in result.stderr


def _with_workspace_file(archive: Path, name: str, content: str) -> None:
    """Add (or replace) one file in a workspace.tar.gz, as an agent's workspace would hold it."""
    import io
    import tarfile

    with tarfile.open(archive) as tar:
        members = [(member, tar.extractfile(member).read() if member.isfile() else None)
                   for member in tar.getmembers() if member.name.lstrip("./") != name]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        added = tarfile.TarInfo(name)
        added.size = len(content.encode())
        tar.addfile(added, io.BytesIO(content.encode()))


TIMER_PATCH = "import time\n_real = time.perf_counter\ntime.perf_counter = lambda: _real() / 10\n"
READS_THE_GRADER = "print(open('/grader/score.py').read())\n"


@pytest.mark.parametrize(
    ("name", "content", "codes"),
    [
        pytest.param("sitecustomize.py", TIMER_PATCH, {"interpreter-hook", "timer-patch"},
                     id="patches-the-timer"),
        pytest.param("peek.py", READS_THE_GRADER, {"protected-read"}, id="reads-the-grader"),
    ],
)
def test_a_workspace_that_cheats_is_rejected_even_with_a_rehashed_manifest(
    run: ToyRun, tmp_path: Path, name: str, content: str, codes: set[str]
) -> None:
    target = ""

    def plant(root: Path, manifest: Manifest) -> Manifest:
        nonlocal target
        target = episode_of(manifest, "toy-a", "oracle")
        _with_workspace_file(root / "episodes" / target / "workspace.tar.gz", name, content)
        return rehashed(root, manifest)

    report = _verify(run, retamper(run.bundle, tmp_path / "b.tar.gz", plant), checks=True)
    for code in codes:
        found = _rejects(report, code)
        assert {finding.episode_id for finding in found} == {target}
        assert any(name in (finding.path or "") + finding.message for finding in found)
