"""Relays: a run's episodes of one configuration played one after another, each starting with
the notes its predecessor left (the `successor` scaffold, or any scaffold with `relay = True`).

The predecessor of the episode with seed s is the episode of the same task, agent, options,
scaffold, tools and budget (everything in its identity but the seed) with the run's previous
seed; the first seed has none. `link` sets `EpisodeSpec.predecessor`; the executors start an
episode only once its predecessor finished; the episode reads the predecessor's notes from
`<out>/<predecessor-id>/handoff.md` (`read_handoff`) and leaves its own there
(`write_handoff`). A resumed run keeps the chain: a finished predecessor's notes are on disk.
The notes are asked for after the episode ended (its workspace graded): their tokens count in
the episode's usage, not against its budget.

A relay of k episodes, each with 1/k of a budget, against one episode with the whole budget
is RE-Bench's best-of-k comparison with memory carried over.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import structlog

from rdbench.agents.base import AgentConfigError
from rdbench.agents.scaffold import load_scaffold
from rdbench.identity import canonical_json

log = structlog.get_logger()

HANDOFF = "handoff.md"
"""The file in an episode's folder holding the notes it left for its successor."""


def is_relay(spec: Any) -> bool:
    """True when the spec's scaffold chains episodes (`relay = True`)."""
    scaffold = getattr(spec, "scaffold", None)
    if scaffold is None:
        return False
    try:
        return bool(load_scaffold(scaffold).relay)
    except AgentConfigError:  # the episode itself reports a bad scaffold
        return False


def relay_key(spec: Any) -> str:
    """What a relay's episodes share: the episode's configuration without its seed (and the
    run and arm it belongs to)."""
    configuration = {key: value for key, value in spec.configuration.items() if key != "seed"}
    return canonical_json([spec.run_id, getattr(spec, "arm", None), configuration])


def predecessors(specs: Sequence[Any]) -> dict[str, str]:
    """episode id -> its predecessor's episode id, for every relay episode that has one."""
    chains: dict[str, list[Any]] = defaultdict(list)
    for spec in specs:
        if is_relay(spec):
            chains[relay_key(spec)].append(spec)
    links: dict[str, str] = {}
    for chain in chains.values():
        ordered = sorted({spec.seed: spec for spec in chain}.values(), key=lambda s: s.seed)
        for before, after in pairwise(ordered):
            links[after.episode_id] = before.episode_id
    return links


def link(specs: Sequence[Any]) -> list[Any]:
    """The specs, each relay episode with its `predecessor` set (the others unchanged)."""
    links = predecessors(specs)
    return [replace(spec, predecessor=links[spec.episode_id])
            if links.get(spec.episode_id) not in (None, spec.predecessor) else spec
            for spec in specs]


def read_handoff(out: Path, predecessor: str | None) -> str | None:
    """The notes the predecessor left in `out` (None without a predecessor or notes)."""
    if predecessor is None:
        return None
    path = out / predecessor / HANDOFF
    try:
        notes = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        log.info("relay.no_notes", predecessor=predecessor)
        return None
    return notes if notes.strip() else None


def write_handoff(folder: Path, notes: str) -> Path:
    """Write `notes` to `<folder>/handoff.md` atomically (a reader sees all of it or none)."""
    path = folder / HANDOFF
    temporary = path.with_name(f".{HANDOFF}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(notes)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return path
