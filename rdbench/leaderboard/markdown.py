"""The leaderboard as a Markdown table (for a README or a pull request): the ranked rows,
then the unverified and rejected apart."""

from __future__ import annotations

from rdbench.leaderboard.aggregate import KS, Board, BoardRow

MARKDOWN = "leaderboard.md"


def _text(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _score(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "-"
    shown = f"{value:.3f}"
    return f"{shown} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else shown


def _rows(board: Board, rows: list[BoardRow]) -> list[str]:
    header = ["submission", "agent", "status", "overall [95% CI]", *board.tasks,
              *(f"score@{k}" for k in KS), "mean cost $", "mean working s"]
    lines = ["| " + " | ".join(_text(name) for name in header) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    ordered = sorted(rows, key=lambda row: (row.overall is None, -(row.overall or 0.0)))
    for row in ordered:
        tasks = []
        for task in board.tasks:
            cell = row.tasks.get(task)
            tasks.append(_score(cell.mean, cell.low, cell.high) + (f" (n={cell.n})" if
                         cell.n else "") if cell else "-")
        cost = "-" if row.mean_cost_usd is None else f"{row.mean_cost_usd:.4f}"
        working = "-" if row.mean_working_s is None else f"{row.mean_working_s:.1f}"
        values = [row.submission, row.agent, row.status,
                  _score(row.overall, row.overall_low, row.overall_high), *tasks,
                  *(_score(row.score_at(k, board.tasks)) for k in KS), cost, working]
        lines.append("| " + " | ".join(_text(value) for value in values) + " |")
    return lines


def markdown_table(board: Board) -> str:
    """The Markdown of the board: a ranked table, then (if any) the unverified apart."""
    lines = ["# rdbench leaderboard", "",
             "Normalized scores (0: the starting solution, 1: the reference solution), mean "
             "with a 95% bootstrap interval.", "", *_rows(board, board.rows)]
    if board.apart:
        lines += ["", "## Unverified and rejected submissions (not ranked)", "",
                  *_rows(board, board.apart)]
    return "\n".join(lines) + "\n"
