"""The leaderboard's plots as PNG images (matplotlib's Agg backend; no display, no pyplot
state): per-task bars with their intervals, and score against working time per row, where
each human episode's validation scores are a step curve beside the agents' dots and
score@k lines (RE-Bench's figure). The numbers the score-against-time plot draws are
`score_time_series`, which the site also publishes as JSON."""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rdbench.leaderboard.aggregate import KS, Board, BoardRow

TASK_BARS = "task-bars.png"
SCORE_TIME = "score-vs-time.png"
SCORE_TIME_DATA = "score-vs-time.json"


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp in its metadata, so the same data give the
    same file)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def plain(text: str) -> str:
    """`text` shown as it is (a $ would start matplotlib's math mode)."""
    return text.replace("$", r"\$")


def _label(row: BoardRow) -> str:
    mark = "" if row.status in ("verified", "reference") else f" [{row.status}]"
    if row.kind == "reference":
        return "reference"
    return plain(f"{row.submission}: {row.agent}{mark}")


def task_bars(board: Board) -> bytes:
    """Grouped bars: per task, each row's mean normalized score with its 95% interval
    (rows of unverified or rejected submissions hatched)."""
    rows = board.all_rows
    figure = Figure(figsize=(max(6.0, 1.6 * len(board.tasks) + 3), 4.2))
    axes = figure.add_subplot()
    width = 0.8 / max(len(rows), 1)
    for index, row in enumerate(rows):
        xs, heights, below, above = [], [], [], []
        for position, task in enumerate(board.tasks):
            cell = row.tasks.get(task)
            if cell is None or cell.mean is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(cell.mean)
            below.append(cell.mean - cell.low if cell.low is not None else 0.0)
            above.append(cell.high - cell.mean if cell.high is not None else 0.0)
        axes.bar(xs, heights, width, yerr=[below, above], capsize=3, label=_label(row),
                 hatch="//" if row in board.apart else None,
                 alpha=0.5 if row.kind == "reference" else 1.0)
    axes.set_xticks(range(len(board.tasks)), [plain(t) for t in board.tasks], rotation=15)
    axes.set_ylabel("normalized score (mean, 95% CI)")
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return png(figure)


def score_time_series(board: Board) -> list[dict[str, Any]]:
    """What the score-against-working-time plot draws, per row but the reference: its
    episodes as (working s, score) dots, score@k as a line through k = 1, 2, 4 (total
    working time, score), and a human row's episodes' validation scores as curves."""
    series = []
    for row in board.all_rows:
        if row.kind == "reference":
            continue
        dots = [[t, s] for cell in row.tasks.values()
                for t, s in zip(cell.working_s, cell.scores, strict=True)]
        curve = [(row.working_at(k, board.tasks), row.score_at(k, board.tasks)) for k in KS]
        series.append({
            "row": row.key, "label": _label(row), "kind": row.kind, "dots": dots,
            "score_at_k": [[t, s] for t, s in curve if t is not None and s is not None],
            "curves": [{"episode_id": c.episode_id, "task_id": c.task_id,
                        "points": [list(point) for point in c.points]} for c in row.curves],
        })
    return series


def score_vs_time(board: Board) -> bytes:
    """Per row: each episode's score against its working time (dots), and score@k over all
    tasks against the k runs' total working time (a line through k = 1, 2, 4); per human
    episode, its validation scores over its working time (a dashed step curve)."""
    figure = Figure(figsize=(7.5, 4.2))
    axes = figure.add_subplot()
    for entry in score_time_series(board):
        dots = axes.scatter([t for t, _ in entry["dots"]], [s for _, s in entry["dots"]],
                            s=18, alpha=0.6, label=entry["label"],
                            marker="D" if entry["kind"] == "human" else "o")
        color = dots.get_facecolor()[0]
        if entry["score_at_k"]:
            axes.plot([t for t, _ in entry["score_at_k"]], [s for _, s in entry["score_at_k"]],
                      marker="s", color=color, linewidth=1)
        for index, curve in enumerate(entry["curves"]):
            axes.plot([t for t, _ in curve["points"]], [s for _, s in curve["points"]],
                      drawstyle="steps-post", linestyle="--", marker=".", color=color,
                      linewidth=1.2, alpha=0.9,
                      label=f"{entry['label']}: validation scores" if index == 0 else None)
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--", label="reference")
    axes.set_xlabel("working time (s): one episode (dots), k runs of score@k (line), a "
                    "person's validation scores (dashed)", fontsize="small")
    axes.set_ylabel("normalized score")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return png(figure)


PLOTS = {TASK_BARS: task_bars, SCORE_TIME: score_vs_time}
"""Each plot's file name and the function that draws it."""
