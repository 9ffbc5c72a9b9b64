"""The leaderboard (`rdbench leaderboard`) over real short runs: null and oracle on two toy
tasks. Every number on the page and in the Markdown is checked against the runs' result.json
files, computed here on its own (plain JSON, brute-force best-of-k)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from leaderboard_helpers import (
    SCORER,
    make_run,
    read_tables,
    results_of,
    row_cells,
    two_toy_tasks,
    write_report,
)
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.leaderboard import aggregate, load_inputs
from rdbench.leaderboard.aggregate import Board, BoardRow, TaskCell, best_of
from rdbench.leaderboard.plots import score_vs_time, task_bars
from rdbench.report import bootstrap_interval, stratified_bootstrap_interval
from rdbench.submission import Finding, VerifiedReport

KS = (1, 2, 4)
RUNS = ("team", "stranger", "scorer")
SCORER_LABEL = "agents_for_tests:Actions"
TASKS = ("toy-a", "toy-b")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> dict[str, Path]:
    """Three real runs: `team` (null and oracle, 2 seeds, verified with a warning),
    `stranger` (oracle, 1 seed, not verified) and `scorer` (an agent that uses the score tool,
    on toy-a only, not verified)."""
    root = tmp_path_factory.mktemp("board")
    tasks = two_toy_tasks(root / "tasks")
    team = make_run(root / "team", tasks, ["null", "oracle"], runs=2)
    stranger = make_run(root / "stranger", tasks, ["oracle"], runs=1)
    scorer = make_run(root / "scorer", tasks[:1], [SCORER], runs=1)
    warned = next(r for r in results_of(team) if r["agent"] == "oracle")["episode_id"]
    write_report(team, [Finding(code="network-attempt", severity="warning",
                                message="the transcript runs curl", episode_id=warned)])
    return {"team": team, "stranger": stranger, "scorer": scorer, "warned": Path(warned)}


@pytest.fixture(scope="module")
def site(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site `rdbench leaderboard` writes for both runs."""
    out = tmp_path_factory.mktemp("site")
    result = CliRunner().invoke(app, ["leaderboard", str(runs["team"]), str(runs["stranger"]),
                                      str(runs["scorer"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _groups(run: Path) -> dict[tuple[str, str], list[dict]]:
    """The run's results by (agent, task)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results_of(run):
        groups.setdefault((result["agent"], result["task_id"]), []).append(result)
    return groups


def _all_groups(runs: dict[str, Path]) -> dict[tuple[str, str, str], list[dict]]:
    return {(name, agent, task): results for name in RUNS
            for (agent, task), results in _groups(runs[name]).items()}


def _table_of(name: str) -> str:
    return "board" if name == "team" else "apart-table"


def _row_id(run: str, agent: str) -> str:
    return f"row-{run}--{agent}".replace(":", "-")


@pytest.mark.docker
def test_each_task_cell_shows_the_runs_mean_interval_and_n(
    runs: dict[str, Path], site: Path
) -> None:
    tables = read_tables(site / "index.html")
    for (name, agent, task), results in _all_groups(runs).items():
        scores = [r["normalized_score"] for r in results]
        cells = row_cells(tables[_table_of(name)], _row_id(name, agent))
        shown = cells[task]
        assert float(shown["sort"]) == pytest.approx(statistics.fmean(scores), abs=1e-12)
        assert shown["text"].startswith(f"{statistics.fmean(scores):.3f}")
        assert f"n={len(scores)}" in shown["text"]
        interval = bootstrap_interval(scores)
        if interval is None:
            assert "[" not in shown["text"]
        else:
            assert f"[{interval[0]:.3f}, {interval[1]:.3f}]" in shown["text"]
        cost = statistics.fmean(r["usage"]["cost_usd"] for r in results)
        assert cost == 0.0  # null and oracle call no model


@pytest.mark.docker
def test_overall_is_the_mean_of_the_task_means_with_its_interval(
    runs: dict[str, Path], site: Path
) -> None:
    tables = read_tables(site / "index.html")
    for name in RUNS:
        by_agent: dict[str, dict[str, list[float]]] = {}
        for (agent, task), results in _groups(runs[name]).items():
            by_agent.setdefault(agent, {})[task] = [r["normalized_score"] for r in results]
        for agent, tasks in by_agent.items():
            cells = row_cells(tables[_table_of(name)], _row_id(name, agent))
            if set(tasks) != set(TASKS):  # a row lacking a task has no overall score
                assert cells["overall [95% CI]"]["sort"] == ""
                continue
            overall = statistics.fmean(statistics.fmean(s) for s in tasks.values())
            assert float(cells["overall [95% CI]"]["sort"]) == pytest.approx(overall, abs=1e-12)
            interval = stratified_bootstrap_interval(list(tasks.values()))
            if interval is not None:
                assert f"[{interval[0]:.3f}, {interval[1]:.3f}]" in \
                    cells["overall [95% CI]"]["text"]
            working = statistics.fmean(r["working_s"] for (a, _), rs in
                                       _groups(runs[name]).items() if a == agent for r in rs)
            assert float(cells["mean working s"]["sort"]) == pytest.approx(working, abs=1e-9)


@pytest.mark.docker
def test_score_at_k_is_the_best_of_the_runs_that_fit_k_slowest_runs(
    runs: dict[str, Path], site: Path
) -> None:
    groups = _all_groups(runs)
    tasks = sorted({task for _, _, task in groups})
    budget = {task: max(statistics.fmean(r["working_s"] for r in results)
                        for (_, _, t), results in groups.items() if t == task)
              for task in tasks}
    tables = read_tables(site / "index.html")
    for name, agent in {(name, agent) for name, agent, _ in groups}:
        cells = row_cells(tables[_table_of(name)], _row_id(name, agent))
        for k in KS:
            per_task = []
            for task in tasks:
                results = groups.get((name, agent, task), [])
                if len(results) < k:
                    break
                scores = [r["normalized_score"] for r in results]
                per_run = statistics.fmean(r["working_s"] for r in results)
                fits = math.floor(k * budget[task] / per_run + 1e-9) if per_run else len(scores)
                m = min(len(scores), max(k, fits))
                per_task.append(statistics.fmean(
                    max(chosen) for chosen in itertools.combinations(scores, m)))
            shown = cells[f"score@{k}"]["sort"]
            if len(per_task) < len(tasks):
                assert shown == "", (name, agent, k)
            else:
                assert float(shown) == pytest.approx(statistics.fmean(per_task), abs=1e-12)


@pytest.mark.docker
def test_unverified_runs_are_apart_and_the_reference_row_scores_one(
    runs: dict[str, Path], site: Path
) -> None:
    tables = read_tables(site / "index.html")
    board = {row["id"]: row for row in tables["board"]["rows"]}
    apart = {row["id"]: row for row in tables["apart-table"]["rows"]}
    assert set(board) == {"row-reference-solution", _row_id("team", "null"),
                          _row_id("team", "oracle")}
    assert set(apart) == {_row_id("stranger", "oracle"), _row_id("scorer", SCORER_LABEL)}
    assert {row["status"] for row in apart.values()} == {"unverified"}
    assert board[_row_id("team", "null")]["status"] == "verified with warnings"
    reference = row_cells(tables["board"], "row-reference-solution")
    assert all(float(reference[task]["sort"]) == 1.0 for task in ("toy-a", "toy-b"))
    assert float(reference["overall [95% CI]"]["sort"]) == 1.0


@pytest.mark.docker
def test_the_markdown_table_shows_the_same_numbers(runs: dict[str, Path], site: Path) -> None:
    lines = (site / "leaderboard.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| submission"))
    names = [name.strip() for name in header.strip("|").split("|")]
    rows = {}
    for line in lines:
        if line.startswith("| ") and not line.startswith("| submission"):
            values = [value.strip() for value in line.strip("|").split("|")]
            rows[(values[0], values[1])] = dict(zip(names, values, strict=True))
    assert rows[("reference solution", "reference")]["overall [95% CI]"] == "1.000"
    for (name, agent, task), results in _all_groups(runs).items():
        scores = [r["normalized_score"] for r in results]
        row = rows[(name, agent)]
        assert row["status"] == ("verified with warnings" if name == "team" else "unverified")
        if name == "scorer":
            assert row["toy-b"] == "-"  # it never ran toy-b
        assert row[task].startswith(f"{statistics.fmean(scores):.3f}")
        assert row[task].endswith(f"(n={len(scores)})")
    unverified = lines.index("## Unverified and rejected submissions (not ranked)")
    assert all(not line.startswith(("| stranger", "| scorer")) for line in lines[:unverified])


@pytest.mark.docker
def test_every_episode_link_opens_its_transcript_page(
    runs: dict[str, Path], site: Path
) -> None:
    tables = read_tables(site / "index.html")
    linked = {link for table in ("board", "apart-table") for row in tables[table]["rows"]
              for cell in row["cells"] for link in cell["links"]}
    episodes = {(name, r["episode_id"]): r for name in RUNS for r in results_of(runs[name])}
    assert len(linked) == len(episodes) == 11  # team: 2 agents x 2 tasks x 2; 2; 1
    instructions = (runs["team"].parent / "tasks" / "toy-a" / "instructions.md").read_text()
    for link in linked:
        page = (site / link).read_text()
        episode_id = Path(link).stem
        run = link.split("/")[1].split("--")[0]
        result = episodes[(run, episode_id)]
        assert episode_id in page
        assert f"final grade {result['normalized_score']:.3f}" in page
        assert 'id="timeline"' in page and 'id="events"' in page
        if result["task_id"] == "toy-a":
            assert instructions.strip().splitlines()[0] in page.replace("&#x27;", "'")
        if run == "team" and episode_id == str(runs["warned"]):
            assert "network-attempt" in page and "the transcript runs curl" in page
        elif run in ("stranger", "scorer"):
            assert "This submission was not verified." in page
        if run == "scorer":  # its two validation scores, on the time line and listed
            lines = (runs["scorer"] / episode_id / "transcript.jsonl").read_text().splitlines()
            scores = [e for e in map(json.loads, lines) if e["type"] == "score"]
            assert len(scores) == 2
            assert page.count('<circle class="validation"') == 2
            for score in scores:
                assert (f"<li>{score['elapsed_working_s']:.1f} s: "
                        f"{score['normalized_score']:.3f}</li>") in page
        else:
            assert "no validation scores" in page


@pytest.mark.docker
def test_the_plots_are_png_files_and_shown_inline(site: Path) -> None:
    index = (site / "index.html").read_text()
    for name in ("task-bars.png", "score-vs-time.png"):
        data = (site / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        assert f'href="plots/{name}"' in index
    assert index.count('src="data:image/png;base64,') == 2
    assert "http://" not in index.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in index


@pytest.mark.docker
def test_the_verifiers_regraded_scores_are_the_ones_counted(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    oracle = [r for r in results_of(runs["team"])
              if r["agent"] == "oracle" and r["task_id"] == "toy-a"]
    report = write_report(runs["team"], [], regraded={oracle[0]["episode_id"]: 0.5},
                          path=tmp_path / "given.verified.json")
    board = aggregate(load_inputs([runs["team"], report]))
    cell = next(row for row in board.rows if row.agent == "oracle").tasks["toy-a"]
    assert sorted(cell.scores) == [0.5, 1.0]
    assert cell.mean == 0.75
    assert (cell.low, cell.high) == bootstrap_interval([0.5, 1.0])
    assert next(row for row in board.rows if row.agent == "oracle").status == "verified"


@pytest.mark.docker
def test_episodes_of_the_human_agent_make_a_human_row(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "people"
    shutil.copytree(runs["stranger"], run)
    for result_file in run.glob("*/result.json"):
        data = json.loads(result_file.read_text())
        result_file.write_text(json.dumps({**data, "agent": "human"}))
    board = aggregate(load_inputs([run]))
    assert [(row.agent, row.kind, row.status) for row in board.apart] == [
        ("human", "human", "unverified")]


@pytest.fixture(scope="module")
def people(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of a person: the scorer's episode (two validation scores, then a submit) as the
    human agent's, who left mid-episode, their session recorded (the result's fields as a
    real human episode's)."""
    run = tmp_path_factory.mktemp("human") / "people"
    shutil.copytree(runs["scorer"], run)
    for result_file in run.glob("*/result.json"):
        data = json.loads(result_file.read_text())
        result_file.write_text(json.dumps({**data, "agent": "human", "ended_by": "person_left",
                                           "recording": "session.cast"}))
    return run


def _validation_scores(run: Path) -> list[list[float]]:
    """The (working s, normalized score) of the run's one episode's score events, read here
    as plain JSON."""
    (transcript,) = run.glob("*/transcript.jsonl")
    events = [json.loads(line) for line in transcript.read_text().splitlines()]
    return [[round(e["elapsed_working_s"], 3), e["normalized_score"]]
            for e in events if e["type"] == "score"]


@pytest.mark.docker
def test_the_site_draws_each_human_episodes_validation_scores_as_a_curve(
    runs: dict[str, Path], people: Path, tmp_path: Path
) -> None:
    expected = _validation_scores(people)
    assert len(expected) == 2 and expected[0][0] < expected[1][0]
    out = tmp_path / "site"
    made = CliRunner().invoke(app, ["leaderboard", str(runs["stranger"]), str(people),
                                    "-o", str(out)])
    assert made.exit_code == 0, made.output
    html = (out / "index.html").read_text(encoding="utf-8")
    start = html.index('<script type="application/json" id="data-score-vs-time">')
    embedded = json.loads(html[html.index(">", start) + 1:html.index("</script>", start)])
    assert embedded == json.loads((out / "plots" / "score-vs-time.json").read_text())
    by_kind = {entry["kind"]: entry for entry in embedded}
    human = by_kind["human"]
    assert human["label"].endswith("people: human [unverified]")
    ((curve),) = human["curves"]
    assert curve["points"] == expected and curve["task_id"] == "toy-a"
    assert by_kind["agent"]["curves"] == []  # only people's runs are drawn as curves
    (page,) = (out / "episodes").glob(f"{human['row']}/*.html")
    shown = page.read_text(encoding="utf-8")
    assert "the person leaving" in shown and "session.cast" in shown
    # the PNG draws them: without the curves it is another picture
    board = aggregate(load_inputs([runs["stranger"], people]))
    (row,) = [row for row in board.all_rows if row.kind == "human"]
    with_curve = score_vs_time(board)
    row.curves = []
    assert score_vs_time(board) != with_curve


def test_a_human_curve_without_working_times_uses_the_time_since_reset() -> None:
    from rdbench.leaderboard.aggregate import score_curve
    from rdbench.leaderboard.inputs import SubmissionEpisode
    from rdbench.records import ResetEvent, ScoreEvent

    events = [
        ResetEvent(t="2026-01-01T00:00:00.000+00:00", step=0, task_id="toy", seed=0,
                   tools=[]),
        ScoreEvent(t="2026-01-01T00:01:30.000+00:00", step=1, raw_score=2.0,
                   normalized_score=0.25, valid=True),
        ScoreEvent(t="2026-01-01T00:00:40.000+00:00", step=1, raw_score=None, valid=False),
        ScoreEvent(t="2026-01-01T00:02:00.000+00:00", step=1, raw_score=3.0,
                   normalized_score=0.5, valid=True, elapsed_working_s=100.0),
    ]
    result = type("Result", (), {"task_id": "toy"})()
    curve = score_curve(SubmissionEpisode(episode_id="e", result=result, events=events))  # type: ignore[arg-type]
    assert curve.points == ((40.0, 0.0), (90.0, 0.25), (100.0, 0.5))


def test_a_path_that_is_no_input_is_refused_with_what_to_give(tmp_path: Path) -> None:
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    result = CliRunner().invoke(app, ["leaderboard", str(odd), "-o", str(tmp_path / "site")])
    assert result.exit_code == 1
    assert "not a bundle (*.tar.gz), a run folder or a verified.json" in result.output


def test_best_of_m_is_the_mean_best_over_every_m_runs() -> None:
    scores = [0.1, 0.7, 0.3, 0.9, 0.2]
    for m in range(1, 6):
        brute = statistics.fmean(max(c) for c in itertools.combinations(scores, m))
        assert best_of(scores, m) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="1 <= m <= 5"):
        best_of(scores, 6)


def test_the_overall_interval_of_one_task_is_that_tasks_interval() -> None:
    scores = [0.1, 0.7, 0.3, 0.9]
    assert stratified_bootstrap_interval([scores]) == bootstrap_interval(scores)
    low, high = stratified_bootstrap_interval([scores, [0.5, 0.5, 0.5]]) or (0.0, 0.0)
    assert low < (statistics.fmean(scores) + 0.5) / 2 < high
    assert stratified_bootstrap_interval([[0.4], [0.6]]) is None


def test_a_report_without_its_bundle_is_refused_naming_the_bundle(tmp_path: Path) -> None:
    report = VerifiedReport(bundle="team.tar.gz", bundle_sha256="0" * 64, name="team",
                            verdict="verified", findings=[], episodes=[],
                            verified_at="2026-01-01T00:00:00+00:00",
                            verifier_rdbench_version="0.1.0", verifier_image_tag="t",
                            verifier_image_hash="0" * 64)
    path = tmp_path / "team.verified.json"
    path.write_text(report.model_dump_json())
    result = CliRunner().invoke(app, ["leaderboard", str(path), "-o", str(tmp_path / "site")])
    assert result.exit_code == 1
    assert "the report of team.tar.gz, which is neither given nor beside it" in result.output


def test_names_with_dollars_are_drawn_as_text_not_math() -> None:
    cell = TaskCell(task_id="cost$", n=2, mean=0.5, low=0.2, high=0.8, mean_cost_usd=1.0,
                    mean_working_s=3.0, scores=(0.2, 0.8), working_s=(2.0, 4.0),
                    episodes=("a", "b"))
    row = BoardRow(key="r", submission="$x^{$ team", agent="a$b$", kind="agent",
                   status="unverified", tasks={"cost$": cell})
    board = Board(tasks=["cost$"], rows=[], apart=[row], submissions=[], budgets={})
    for draw in (task_bars, score_vs_time):
        assert draw(board).startswith(b"\x89PNG")
