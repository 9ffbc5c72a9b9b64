"""The static site: `index.html` (the sortable table, the plots inline, the unverified apart,
the per-task details, the submissions and their findings), one page per episode under
`episodes/`, the plots as PNG files under `plots/` (with the numbers of the score-against-
time plot as JSON, also embedded in index.html) and the Markdown table `leaderboard.md`.
No page loads anything from elsewhere."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path

import structlog

from rdbench.leaderboard.aggregate import KS, Board, BoardRow, slug
from rdbench.leaderboard.episode_page import episode_page
from rdbench.leaderboard.markdown import MARKDOWN, markdown_table
from rdbench.leaderboard.page import cell, frame, number, status_badge
from rdbench.leaderboard.plots import (
    PLOTS,
    SCORE_TIME,
    SCORE_TIME_DATA,
    TASK_BARS,
    score_time_series,
)

log = structlog.get_logger()

INDEX = "index.html"
PLOTS_DIR = "plots"
EPISODES_DIR = "episodes"


def episode_href(row: BoardRow, episode_id: str) -> str:
    """The episode page's path, relative to the site's root."""
    return f"{EPISODES_DIR}/{row.key}/{slug(episode_id)}.html"


def write_site(board: Board, out: Path, experiments: Sequence[str] = ()) -> Path:
    """Write the whole site of `board` into the folder `out`; return index.html's path.
    `experiments` are HTML sections of sweeps (rdbench.experiments.report.section_of),
    shown under "Experiments"."""
    out.mkdir(parents=True, exist_ok=True)
    (out / PLOTS_DIR).mkdir(exist_ok=True)
    images = {}
    for name, draw in PLOTS.items():
        images[name] = draw(board)
        (out / PLOTS_DIR / name).write_bytes(images[name])
    series = json.dumps(score_time_series(board), indent=1)
    (out / PLOTS_DIR / SCORE_TIME_DATA).write_text(series, encoding="utf-8")
    _write_episodes(board, out)
    (out / MARKDOWN).write_text(markdown_table(board), encoding="utf-8")
    index = out / INDEX
    body = _index_body(board, images, experiments, series)
    index.write_text(frame("rdbench leaderboard", body), encoding="utf-8")
    log.info("leaderboard.site_written", out=str(out), rows=len(board.all_rows))
    return index


def _write_episodes(board: Board, out: Path) -> None:
    for row in board.all_rows:
        if row.kind == "reference":
            continue
        submission = board.submissions[row.origin or 0]
        wanted = {episode for task in row.tasks.values() for episode in task.episodes}
        for episode in submission.episodes:
            if episode.episode_id not in wanted:
                continue
            path = out / episode_href(row, episode.episode_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(episode_page(submission, episode, row), encoding="utf-8")


def _ordered(rows: list[BoardRow]) -> list[BoardRow]:
    """Best overall first; rows without an overall score last."""
    return sorted(rows, key=lambda row: (row.overall is None, -(row.overall or 0.0)))


def _index_body(board: Board, images: dict[str, bytes], experiments: Sequence[str] = (),
                series: str = "[]") -> str:
    parts = [
        "<h1>rdbench leaderboard</h1>",
        f"<p>{len(board.submissions)} submission(s) on {len(board.tasks)} task(s). Scores are "
        "normalized: 0 is the task's starting solution, 1 its expert reference solution. "
        "Click a column's header to sort by it; the small numbers under a score link to its "
        "episodes' transcripts.</p>",
        "<h2>Verified submissions</h2>",
        *(["<p>No verified submission yet: verify a bundle with <code>rdbench verify</code> "
           "and give its verified.json.</p>"]
          if all(row.kind == "reference" for row in board.rows) else []),
        _table("board", board, _ordered(board.rows)),
    ]
    if board.apart:
        parts += [
            '<section class="apart" id="apart"><h2>Unverified and rejected submissions</h2>',
            "<p>Not checked by <code>rdbench verify</code>, or rejected by it: not ranked "
            "with the verified ones, shown for reference only.</p>",
            _table("apart-table", board, _ordered(board.apart)),
            "</section>",
        ]
    parts += [
        "<h2>Plots</h2>",
        _image(TASK_BARS, images[TASK_BARS], "Mean normalized score per task with 95% "
               "bootstrap intervals"),
        _image(SCORE_TIME, images[SCORE_TIME], "Score against working time (dashed: each "
               "human episode's validation scores)"),
        '<script type="application/json" id="data-score-vs-time">'
        + _script_safe(series) + "</script>",
        "<h2>Per task</h2>",
        _details(board),
        "<h2>Submissions</h2>",
        _submissions(board),
        *(['<h2 id="experiments">Experiments</h2>', *experiments] if experiments else []),
        "<h2>How these numbers are made</h2>",
        _method(),
    ]
    return "\n".join(parts)


def _script_safe(text: str) -> str:
    """JSON `text` safe inside a <script> element (no `</` can close it)."""
    return text.replace("</", "<\\/")


def _image(name: str, data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img class="plot" id="plot-{name.removesuffix(".png")}" '
            f'src="data:image/png;base64,{encoded}" alt="{escape(caption)}">'
            f'<figcaption>{escape(caption)} (<a href="{PLOTS_DIR}/{name}">PNG</a>)'
            "</figcaption></figure>")


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f'<br><span class="ci">[{low:.3f}, {high:.3f}]</span>'


def _table(table_id: str, board: Board, rows: list[BoardRow]) -> str:
    headers = ['<th class="name">submission</th>', '<th class="name">agent</th>',
               '<th class="name">status</th>', "<th>overall [95% CI]</th>",
               *(f"<th>{escape(task)}</th>" for task in board.tasks),
               *(f"<th>score@{k}</th>" for k in KS), "<th>mean cost $</th>",
               "<th>mean working s</th>"]
    body = []
    for row in rows:
        cells = [
            cell(escape(row.submission), row.submission, "name"),
            cell(escape(row.agent), row.agent, "name"),
            cell(status_badge(row.status), row.status, "name"),
            cell(number(row.overall) + _interval(row.overall_low, row.overall_high),
                 row.overall, "overall"),
        ]
        for task in board.tasks:
            task_cell = row.tasks.get(task)
            if task_cell is None:
                cells.append(cell(number(None), None))
                continue
            links = "".join(
                f'<a href="{escape(episode_href(row, episode))}" title="{escape(episode)}">'
                f"{index}</a>"
                for index, episode in enumerate(task_cell.episodes, start=1)
            )
            shown = number(task_cell.mean) + _interval(task_cell.low, task_cell.high)
            if task_cell.n:
                shown += f' <span class="ci">n={task_cell.n}</span>'
            if links:
                shown += f'<br><span class="eps">{links}</span>'
            cells.append(cell(shown, task_cell.mean, f"task task-{slug(task)}"))
        for k in KS:
            value = row.score_at(k, board.tasks)
            cells.append(cell(number(value), value, f"at-k at-{k}"))
        cells.append(cell(number(row.mean_cost_usd, ".4f"), row.mean_cost_usd, "cost"))
        cells.append(cell(number(row.mean_working_s, ".1f"), row.mean_working_s, "working"))
        body.append(f'<tr id="row-{row.key}" class="{row.kind}" '
                    f'data-status="{escape(row.status)}">{"".join(cells)}</tr>')
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{"".join(headers)}</tr>'
            f"</thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>")


def _details(board: Board) -> str:
    headers = ["task", "submission", "agent", "n", "mean", "95% low", "95% high",
               "mean cost $", "mean working s",
               *(f"score@{k} (runs, total s)" for k in KS)]
    body = []
    for task in board.tasks:
        for row in board.all_rows:
            task_cell = row.tasks.get(task)
            if task_cell is None or row.kind == "reference":
                continue
            cells = [cell(escape(task), task, "name"), cell(escape(row.submission),
                     row.submission, "name"), cell(escape(row.agent), row.agent, "name"),
                     cell(str(task_cell.n), task_cell.n), cell(number(task_cell.mean),
                     task_cell.mean), cell(number(task_cell.low), task_cell.low),
                     cell(number(task_cell.high), task_cell.high),
                     cell(number(task_cell.mean_cost_usd, ".4f"), task_cell.mean_cost_usd),
                     cell(number(task_cell.mean_working_s, ".1f"), task_cell.mean_working_s)]
            for k in KS:
                at = row.at_k.get(k, {}).get(task)
                if at is None:
                    cells.append(cell(number(None), None))
                    continue
                note = f" ({at.runs}{'+' if at.capped else ''}, {at.total_working_s or 0:.1f})"
                cells.append(cell(number(at.score) + f'<span class="ci">{note}</span>',
                                  at.score))
            body.append(f'<tr data-row="{row.key}">{"".join(cells)}</tr>')
    head = "".join(f'<th class="name">{h}</th>' if i < 3 else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    budgets = ", ".join(f"{escape(task)}: {seconds:.1f} s" for task, seconds in
                        board.budgets.items())
    return (f'<table class="sortable" id="details"><thead><tr>{head}</tr></thead><tbody>\n'
            + "\n".join(body) + "\n</tbody></table>"
            + f"<p>score@k budget unit (working time of one run of the slowest row, per task):"
            f" {budgets}. A + after the runs: more runs would fit than the row has.</p>")


def _submissions(board: Board) -> str:
    items = []
    for submission in board.submissions:
        report = submission.verified
        lines = [f"<h3>{escape(submission.name)} {status_badge(submission.status)}</h3>",
                 f"<p>From <code>{escape(submission.source.name)}</code>, "
                 f"{len(submission.episodes)} episode(s)."]
        if submission.manifest is not None:
            manifest = submission.manifest
            lines.append(f" rdbench {escape(manifest.rdbench_version)}, agent version "
                         f"{escape(manifest.agent_version or 'not given')}, image "
                         f"{escape(manifest.image_tag)}.")
        lines.append("</p>")
        if report is None:
            lines.append("<p>Not verified.</p>")
        else:
            lines.append(f"<p>Verified at {escape(report.verified_at)} by rdbench "
                         f"{escape(report.verifier_rdbench_version)}: "
                         f"{len(report.findings)} finding(s).</p>")
            if report.findings:
                lines.append("<ol>" + "".join(
                    f'<li class="finding-{finding.severity}"><code>{escape(finding.code)}'
                    f"</code> ({finding.severity}) {escape(finding.message)}"
                    + (f" [{escape(finding.episode_id)}]" if finding.episode_id else "")
                    + "</li>" for finding in report.findings) + "</ol>")
        for problem in submission.problems:
            lines.append(f"<p>Not counted: {escape(problem)}</p>")
        items.append("".join(lines))
    return "\n".join(items)


def _method() -> str:
    return (
        "<ul><li>Per task: the mean of the runs' normalized scores, with a 95% percentile "
        "bootstrap interval (10,000 resamples, fixed seed); n is the number of scored runs "
        "(infrastructure failures are not scores). Verified submissions count the "
        "verifier's re-graded scores.</li>"
        "<li>Overall: the mean over tasks of the per-task means; its interval resamples "
        "each task's runs on their own. A row missing a task has no overall score.</li>"
        "<li>score@k (as RE-Bench reports it): per task, the budget is k runs of the "
        "slowest row (by mean working time); each row gets as many runs as fit in that "
        "budget (at least k, at most the runs it has) and scores the expected best of "
        "them; the column is the mean over tasks. Shown where every task has at least k "
        "runs.</li>"
        "<li>The reference solution scores 1 on every task by definition; human rows are "
        "recorded runs of the <code>human</code> agent.</li></ul>"
    )
