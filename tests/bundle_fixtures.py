"""Real short runs and bundles for the bundle and verify tests: `rdbench run` with the null and
oracle agents on two copies of the toy task (real Docker), made once per test process, and
helpers that tamper with a bundle the way a cheat would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import toy_task_as
from typer.testing import CliRunner

from rdbench.bundle import make_bundle, open_bundle, write_bundle
from rdbench.submission import MANIFEST, Manifest
from rdbench.task import TaskSpec, load_task

TASK_IDS = ("toy-a", "toy-b")


@dataclass(frozen=True)
class ToyRun:
    """A finished run folder, its tasks (by id) and a bundle made from it."""

    folder: Path
    tasks: dict[str, TaskSpec]
    bundle: Path


_MADE: dict[str, ToyRun] = {}  # one run per test process: the tests only read it


def toy_run(factory: pytest.TempPathFactory) -> ToyRun:
    """The run (null and oracle on toy-a and toy-b, one seed, Docker) and its bundle."""
    if "run" not in _MADE:
        base = factory.mktemp("toy-run")
        folders = [toy_task_as(base / "tasks", task_id) for task_id in TASK_IDS]
        out = base / "run"
        command = ["run", "--agent", "null", "--agent", "oracle", "--runs", "1",
                   "--max-steps", "5", "--sandbox", "docker", "--parallel", "2",
                   "--out", str(out)]
        for folder in folders:
            command += ["--task", str(folder)]
        from rdbench.cli import app

        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output + result.stderr
        bundle = make_bundle(out, base / "bundle.tar.gz", name="toy-submission",
                             agent_version="1.2", notes="made by the tests")
        tasks = {spec.id: spec for spec in map(load_task, folders)}
        _MADE["run"] = ToyRun(folder=out, tasks=tasks, bundle=bundle)
    return _MADE["run"]


def retamper(
    bundle: Path,
    out: Path,
    change: Callable[[Path, Manifest], Manifest],
) -> Path:
    """A copy of `bundle` at `out` after `change(folder, manifest)` edited its unpacked files
    and returned the manifest to write (the same one, or one edited to match)."""
    with open_bundle(bundle) as opened:
        manifest = change(opened.root, opened.manifest)
        files = {name: opened.root / name for name in opened.files() if name != MANIFEST}
        return write_bundle(manifest, files, out)


def rehashed(root: Path, manifest: Manifest) -> Manifest:
    """`manifest` with each file's size and SHA-256 taken from the files now in `root`, and
    files no longer there dropped: a cheat who also edits the manifest."""
    from rdbench.bundle import file_sha256
    from rdbench.submission import FileEntry

    entries = [
        FileEntry(path=entry.path, size=(root / entry.path).stat().st_size,
                  sha256=file_sha256(root / entry.path))
        for entry in manifest.files if (root / entry.path).is_file()
    ]
    return manifest.model_copy(update={"files": entries})


def episode_of(manifest: Manifest, task_id: str, agent: str) -> str:
    """The id of the manifest's episode of `task_id` and `agent`."""
    return next(episode for episode in manifest.episodes
                if episode.startswith(f"{task_id}__{agent}__"))


def edit_json(path: Path, **fields: object) -> None:
    """Set `fields` in the JSON object in `path`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(fields)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def copy_into(source: Path, target: Path) -> None:
    """Overwrite `target` with the bytes of `source`."""
    shutil.copyfile(source, target)
