"""An experiment as people read it: Markdown (report.md) and an HTML section (the sweep's
report.html and the leaderboard's "Experiments" section). The numbers come from
rdbench.experiments.effects; this module only lays them out."""

from __future__ import annotations

import base64
from html import escape

from rdbench.experiments.effects import Effect, Experiment
from rdbench.experiments.plots import EFFECTS, SCORE_TIME
from rdbench.leaderboard.page import cell, number

READING = (
    "Scores are normalized: 0 is the task's starting solution, 1 its reference solution. "
    "An effect is paired: for each task and seed, the arm's score minus the baseline's, "
    "averaged per task, then over tasks. Its 95% bootstrap interval resamples each task's "
    "differences; an interval that excludes 0 is an effect these runs show, one that "
    "includes 0 is not (more repetitions narrow it)."
)


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _verdict(effect: Effect) -> str:
    if effect.mean is None:
        return "no pairs"
    if effect.low is None:
        return "too few pairs for an interval"
    if not effect.excludes_zero:
        return "interval includes 0"
    return "better than baseline" if effect.mean > 0 else "worse than baseline"


def _md(text: str) -> str:
    """`text` safe in a Markdown table cell."""
    return text.replace("|", "\\|")


def markdown(experiment: Experiment, plots: dict[str, str] | None = None) -> str:
    """The report as Markdown; `plots` maps a plot's file name to its path from the file."""
    lines = [f"# Experiment: {_md(experiment.name)}", "",
             f"Baseline arm: **{_md(experiment.baseline)}**. Arms: "
             + ", ".join(_md(arm) for arm in experiment.arms)
             + f". Tasks: {', '.join(_md(task) for task in experiment.tasks)}.", "",
             READING, "", "## Effects against the baseline (paired)", "",
             "| arm | task | pairs | effect [95% CI] | reading |", "|---|---|---:|---|---|"]
    for effect in experiment.effects:
        lines.append(f"| {_md(effect.arm)} | {_md(effect.task_id or 'all tasks')} | "
                     f"{effect.pairs} | {_signed(effect.mean)}"
                     f"{_interval(effect.low, effect.high)} | {_verdict(effect)} |")
    if not experiment.effects:
        lines.append("| - | - | 0 | - | only the baseline arm ran |")
    lines += ["", "## Score per arm and task", "",
              "| arm | task | n | mean [95% CI] | mean working s | not scored |",
              "|---|---|---:|---|---:|---:|"]
    for c in experiment.cells:
        lines.append(f"| {_md(c.arm)} | {_md(c.task_id)} | {c.n} | {number(c.mean)}"
                     f"{_interval(c.low, c.high)} | {number(c.mean_working_s, '.1f')} | "
                     f"{c.not_scored} |")
    for name, title in ((EFFECTS, "Effects against the baseline"),
                        (SCORE_TIME, "Score against working time")):
        if plots and name in plots:
            lines += ["", f"![{title}]({plots[name]})"]
    return "\n".join(lines).replace("\u2013", "-") + "\n"


def html_section(experiment: Experiment, images: dict[str, bytes], anchor: str,
                 heading: str = "h2") -> str:
    """The experiment as an HTML section (its plots inline), with id `anchor`."""
    sub = "h3" if heading == "h2" else "h4"
    effect_rows = [
        "<tr>" + cell(escape(e.arm), e.arm, "name")
        + cell(escape(e.task_id or "all tasks"), e.task_id or "", "name")
        + cell(str(e.pairs), e.pairs)
        + cell(escape(_signed(e.mean)) + _ci(e.low, e.high), e.mean, "effect")
        + cell(escape(_verdict(e)), _verdict(e), "name") + "</tr>"
        for e in experiment.effects
    ]
    score_rows = [
        "<tr>" + cell(escape(c.arm), c.arm, "name") + cell(escape(c.task_id), c.task_id, "name")
        + cell(str(c.n), c.n) + cell(number(c.mean) + _ci(c.low, c.high), c.mean, "mean")
        + cell(number(c.mean_working_s, ".1f"), c.mean_working_s)
        + cell(str(c.not_scored), c.not_scored) + "</tr>"
        for c in experiment.cells
    ]
    figures = "".join(_figure(name, images[name], caption) for name, caption in (
        (EFFECTS, f"Paired effect against {experiment.baseline} (95% CI)"),
        (SCORE_TIME, "Score against working time, per arm")) if name in images)
    return "\n".join([
        f'<section class="experiment" id="{escape(anchor)}">',
        f"<{heading}>Experiment: {escape(experiment.name)}</{heading}>",
        f"<p>Baseline arm: <b>{escape(experiment.baseline)}</b>. {escape(READING)}</p>",
        f"<{sub}>Effects against the baseline (paired)</{sub}>",
        _table(f"{anchor}-effects", ["arm", "task", "pairs", "effect [95% CI]", "reading"],
               effect_rows, names=(0, 1, 4)),
        f"<{sub}>Score per arm and task</{sub}>",
        _table(f"{anchor}-scores", ["arm", "task", "n", "mean [95% CI]", "mean working s",
                                    "not scored"], score_rows, names=(0, 1)),
        figures,
        "</section>",
    ])


def _ci(low: float | None, high: float | None) -> str:
    text = _interval(low, high)
    return f'<br><span class="ci">{escape(text.strip())}</span>' if text else ""


def _table(table_id: str, headers: list[str], rows: list[str], names: tuple[int, ...]) -> str:
    head = "".join(f'<th class="name">{escape(h)}</th>' if i in names else
                   f"<th>{escape(h)}</th>" for i, h in enumerate(headers))
    return (f'<table class="sortable" id="{escape(table_id)}"><thead><tr>{head}</tr></thead>'
            "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>")


def _figure(name: str, data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure><img class="plot" src="data:image/png;base64,{encoded}" '
            f'alt="{escape(caption)}"><figcaption>{escape(caption)} ({escape(name)})'
            "</figcaption></figure>")
