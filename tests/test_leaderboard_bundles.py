"""`rdbench leaderboard` over real bundles (`rdbench submit`), one verified by
`rdbench verify`'s verify_bundle and one not: the verified ranks, the other is apart and
marked, and the numbers are those of the results inside the bundles."""

from __future__ import annotations

import json
import statistics
import tarfile
from pathlib import Path

import pytest
from leaderboard_helpers import make_run, read_tables, row_cells, two_toy_tasks
from typer.testing import CliRunner

from rdbench.bundle import make_bundle
from rdbench.cli import app
from rdbench.task import load_task
from rdbench.verify import verify_bundle


def _results_in(bundle: Path) -> list[dict]:
    """The result.json files inside a bundle, read straight from the archive."""
    with tarfile.open(bundle, "r:gz") as tar:
        return [json.load(tar.extractfile(member))  # type: ignore[arg-type]
                for member in tar.getmembers() if member.name.endswith("/result.json")]


@pytest.mark.docker
def test_a_verified_bundle_ranks_and_an_unverified_one_is_apart(
    tmp_path: Path, sandbox_image: str
) -> None:
    tasks = two_toy_tasks(tmp_path / "tasks")
    run = make_run(tmp_path / "run", tasks, ["null", "oracle"], runs=1)
    team = make_bundle(run, tmp_path / "team.tar.gz", name="team")
    other = make_bundle(run, tmp_path / "other.tar.gz", name="other")
    report = verify_bundle(
        team, backend="docker", tasks={task.name: load_task(task) for task in tasks})
    assert report.verdict == "verified", report.findings
    (tmp_path / "team.verified.json").write_text(report.model_dump_json())
    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["leaderboard", str(team), str(other), "-o", str(out)])
    assert result.exit_code == 0, result.output
    tables = read_tables(out / "index.html")
    assert {row["status"] for row in tables["board"]["rows"]} == {"reference", "verified"}
    assert {row["status"] for row in tables["apart-table"]["rows"]} == {"unverified"}
    for name, table in (("team", "board"), ("other", "apart-table")):
        for result_data in _results_in(tmp_path / f"{name}.tar.gz"):
            cells = row_cells(tables[table], f"row-{name}--{result_data['agent']}")
            shown = float(cells[result_data["task_id"]]["sort"])
            assert shown == pytest.approx(result_data["normalized_score"], abs=1e-12)
        means = {r["agent"]: statistics.fmean(x["normalized_score"] for x in
                                              _results_in(tmp_path / f"{name}.tar.gz")
                                              if x["agent"] == r["agent"])
                 for r in _results_in(tmp_path / f"{name}.tar.gz")}
        for agent, mean in means.items():
            overall = row_cells(tables[table], f"row-{name}--{agent}")["overall [95% CI]"]
            assert float(overall["sort"]) == pytest.approx(mean, abs=1e-12)
    pages = sorted((out / "episodes" / "team--oracle").glob("*.html"))
    assert len(pages) == 2
    assert all("None: verdict verified." in page.read_text() for page in pages)
