"""An experiment's plots as PNG images (matplotlib's Agg backend, as the leaderboard draws):
each arm's paired effect against the baseline with its 95% interval, and each episode's score
against its working time, per arm."""

from __future__ import annotations

from matplotlib.figure import Figure

from rdbench.experiments.effects import Experiment
from rdbench.leaderboard.plots import plain, png

EFFECTS = "effects.png"
SCORE_TIME = "score-vs-time.png"


def effects_plot(experiment: Experiment) -> bytes:
    """One row per arm: its effect over all tasks (a square) with its interval, and its
    effect on each task (small dots) when there are several; a line at 0 (no effect)."""
    arms = [arm for arm in experiment.arms if arm != experiment.baseline]
    figure = Figure(figsize=(7.0, 1.2 + 0.55 * max(len(arms), 1)))
    axes = figure.add_subplot()
    for row, arm in enumerate(arms):
        overall = experiment.overall(arm)
        if overall is None or overall.mean is None:
            continue
        low = overall.mean - overall.low if overall.low is not None else 0.0
        high = overall.high - overall.mean if overall.high is not None else 0.0
        axes.errorbar([overall.mean], [row], xerr=[[low], [high]], fmt="s", capsize=4,
                      color="C0" if overall.excludes_zero else "grey")
        if len(experiment.tasks) > 1:
            per_task = [e.mean for e in experiment.effects
                        if e.arm == arm and e.task_id is not None and e.mean is not None]
            axes.scatter(per_task, [row] * len(per_task), s=12, color="C1", alpha=0.7,
                         zorder=3)
    axes.axvline(0.0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(arms)), [plain(arm) for arm in arms])
    axes.set_ylim(-0.7, max(len(arms), 1) - 0.3)
    axes.invert_yaxis()
    axes.set_xlabel(f"paired effect on normalized score vs {plain(experiment.baseline)} "
                    "(mean, 95% CI)")
    figure.tight_layout()
    return png(figure)


def score_time_plot(experiment: Experiment) -> bytes:
    """Each scored episode's normalized score against its working time, coloured by arm."""
    figure = Figure(figsize=(7.0, 4.0))
    axes = figure.add_subplot()
    for arm in experiment.arms:
        mine = [p for p in experiment.points if p.arm == arm]
        if mine:
            axes.scatter([p.working_s for p in mine], [p.score for p in mine], s=20,
                         alpha=0.7, label=plain(arm))
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("working time (s) of the episode")
    axes.set_ylabel("normalized score")
    if experiment.points:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return png(figure)


PLOTS = {EFFECTS: effects_plot, SCORE_TIME: score_time_plot}
"""Each plot's file name and the function that draws it."""
