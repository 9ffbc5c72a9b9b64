"""Experiments on agents: the report of a sweep (rdbench.sweep) of arms against a baseline.

`effects` computes the numbers (per arm and task the mean score with its bootstrap interval,
per arm the paired effect against the baseline), `plots` draws them, `render` lays them out
as Markdown and HTML, and `report` reads a sweep's run folder and writes its report.
"""
