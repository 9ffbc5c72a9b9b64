"""An experiment's report from its run folder: `load_experiment(folder)` reads the episodes
and the sweep saved there (sweep.json: the arms and the baseline), `write_report(folder)`
writes report.md, the plots as PNG and report.html (in the leaderboard's page frame)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from rdbench.experiments.effects import Experiment, analyze
from rdbench.experiments.plots import PLOTS
from rdbench.experiments.render import html_section, markdown
from rdbench.leaderboard.aggregate import slug
from rdbench.leaderboard.page import frame
from rdbench.records import RecordError
from rdbench.report import load_run
from rdbench.suite import RunConfig, RunConfigError, expand, run_id_for
from rdbench.sweep import SWEEP_FILE, load_saved

log = structlog.get_logger()

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    markdown: Path
    html: Path
    plots: list[Path]


def load_experiment(folder: Path) -> Experiment:
    """The experiment recorded in the run folder `folder`: the episodes of its configuration
    (run.json), named and compared as its sweep.json says. RecordError if it is no sweep's
    run folder."""
    sweep = load_saved(folder)
    if sweep is None:
        raise RecordError(f"{folder}: no {SWEEP_FILE}; give the folder of a sweep "
                          "(`rdbench sweep FILE -o FOLDER` writes it)")
    try:
        wanted = {spec.episode_id for spec in expand(RunConfig.load(folder),
                                                     run_id_for(folder))}
    except RunConfigError as error:
        raise RecordError(str(error)) from error
    records = load_run(folder)
    results = [r for r in records.results if r.episode_id in wanted]
    for problem in records.unreadable:
        log.warning("experiment.record_unreadable", problem=problem)
    return analyze(results, baseline=sweep.baseline, arms=sweep.arm_names, tasks=sweep.tasks,
                   name=sweep.name or folder.resolve().name)


def images_of(experiment: Experiment) -> dict[str, bytes]:
    """Every plot of the experiment, drawn: file name -> PNG bytes."""
    return {name: draw(experiment) for name, draw in PLOTS.items()}


def section_of(folder: Path, heading: str = "h2") -> str:
    """The HTML section of the experiment in `folder` (for the leaderboard's page)."""
    experiment = load_experiment(folder)
    return html_section(experiment, images_of(experiment),
                        f"experiment-{slug(experiment.name)}", heading)


def write_report(folder: Path) -> ReportFiles:
    """Write the report of the experiment in `folder` into it; return what was written."""
    experiment = load_experiment(folder)
    images = images_of(experiment)
    (folder / PLOTS_DIR).mkdir(exist_ok=True)
    paths = []
    for name, data in images.items():
        path = folder / PLOTS_DIR / name
        path.write_bytes(data)
        paths.append(path)
    text = markdown(experiment, {name: f"{PLOTS_DIR}/{name}" for name in images})
    (folder / REPORT_MD).write_text(text, encoding="utf-8")
    section = html_section(experiment, images, f"experiment-{slug(experiment.name)}", "h1")
    (folder / REPORT_HTML).write_text(frame(f"rdbench experiment: {experiment.name}",
                                            section), encoding="utf-8")
    log.info("experiment.report_written", folder=str(folder), arms=len(experiment.arms))
    return ReportFiles(folder / REPORT_MD, folder / REPORT_HTML, paths)
