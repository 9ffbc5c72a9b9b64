"""Helpers of the leaderboard tests: real short runs, a verifier's report for them, and a
reader of the site's tables."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from helpers import toy_task_as
from typer.testing import CliRunner

from rdbench.cli import app
from rdbench.submission import Finding, RegradedEpisode, VerifiedReport, verdict_of


def make_run(out: Path, tasks: list[Path], agents: list[str], runs: int) -> Path:
    """A real run (`rdbench run` on Docker) of `agents` on `tasks`, `runs` seeds each."""
    command = ["run", "--sandbox", "docker", "--runs", str(runs), "--parallel", "2",
               "--out", str(out)]
    for task in tasks:
        command += ["--task", str(task)]
    for agent in agents:
        command += ["--agent", agent]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    return out


SCORER = "agents_for_tests:Actions actions='" + json.dumps([
    {"tool": "write_file", "input": {"path": "answer.py", "content": "print(3)"}},
    {"tool": "score", "input": {}},
    {"tool": "write_file", "input": {"path": "answer.py", "content": "print(4)"}},
    {"tool": "score", "input": {}},
], separators=(",", ":")) + "'"
"""An agent that uses the score tool twice and submits (0.75 on the toy task's test split: it
prints 4, the start prints 1, the reference 5)."""


def two_toy_tasks(folder: Path) -> list[Path]:
    """Two copies of the toy task, toy-a and toy-b."""
    return [toy_task_as(folder, name) for name in ("toy-a", "toy-b")]


def results_of(run: Path) -> list[dict]:
    """Every result.json of the run, read as plain JSON (not through rdbench's models)."""
    return [json.loads(path.read_text()) for path in sorted(run.glob("*/result.json"))]


def write_report(run: Path, findings: list[Finding], regraded: dict[str, float] | None = None,
                 path: Path | None = None) -> Path:
    """A verifier's report for the run folder `run` (its scores re-graded as claimed, or as
    `regraded` says by episode id), written beside it as NAME.verified.json (or to `path`)."""
    episodes = [
        RegradedEpisode(episode_id=r["episode_id"], task_id=r["task_id"], agent=r["agent"],
                        seed=r["seed"], claimed_normalized=r["normalized_score"],
                        regraded_normalized=(regraded or {}).get(r["episode_id"],
                                                                 r["normalized_score"]),
                        regraded_raw=r["raw_score"], valid=r["valid"], tolerance=0.0)
        for r in results_of(run)
    ]
    report = VerifiedReport(bundle=run.name, bundle_sha256="0" * 64, name=run.name,
                            verdict=verdict_of(findings), findings=findings, episodes=episodes,
                            verified_at="2026-01-01T00:00:00+00:00",
                            verifier_rdbench_version="0.1.0", verifier_image_tag="test",
                            verifier_image_hash="0" * 64)
    target = path or run.parent / f"{run.name}.verified.json"
    target.write_text(report.model_dump_json(indent=2))
    return target


class TableReader(HTMLParser):
    """The sortable tables of a page: per table id, its headers and its rows (each row: its
    id, its classes and, per cell, the data-sort value and the text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table: dict | None = None
        self._row: dict | None = None
        self._cell: dict | None = None
        self._header: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = dict(attrs)
        if tag == "table" and given.get("id"):
            self._table = {"headers": [], "rows": []}
            self.tables[given["id"] or ""] = self._table
        elif self._table is not None and tag == "th":
            self._header = []
        elif tag == "tr" and self._table is not None and (
                (given.get("id") or "").startswith("row-") or given.get("data-row")):
            self._row = {"id": given.get("id") or given.get("data-row"),
                         "class": given.get("class"), "status": given.get("data-status"),
                         "cells": []}
            self._table["rows"].append(self._row)
        elif self._row is not None and tag == "td":
            self._cell = {"sort": given.get("data-sort"), "text": "", "links": []}
            self._row["cells"].append(self._cell)
        elif self._cell is not None and tag == "a":
            self._cell["links"].append(given.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "th" and self._header is not None and self._table is not None:
            self._table["headers"].append("".join(self._header).strip())
            self._header = None
        elif tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._header is not None:
            self._header.append(data)
        if self._cell is not None:
            self._cell["text"] += data


def read_tables(page: Path) -> dict[str, dict]:
    """The tables of the HTML page `page` (see TableReader)."""
    reader = TableReader()
    reader.feed(page.read_text(encoding="utf-8"))
    return reader.tables


def row_cells(table: dict, row_id: str) -> dict[str, dict]:
    """The cells of one row by column header."""
    row = next(row for row in table["rows"] if row["id"] == row_id)
    return dict(zip(table["headers"], row["cells"], strict=True))
