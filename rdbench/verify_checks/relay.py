"""Relays (the successor scaffold, rdbench.relay): the notes an episode started with came from
its predecessor in the same bundle, and the notes it left are the ones its model wrote.

An episode's notes in are its transcript's `scaffold` event "handoff_in"; its notes out its
"handoff_out" event and its `handoff.md`. Its predecessor is the bundle's episode of the same
configuration (task, agent and options, arm, scaffold, tools and variants, budget) with the
largest seed below its own: the episode rdbench.relay linked it to.
"""

from __future__ import annotations

from collections.abc import Sequence

from rdbench.identity import canonical_json
from rdbench.records import ScaffoldEvent
from rdbench.relay import HANDOFF
from rdbench.submission import Finding, Manifest
from rdbench.task import TaskSpec
from rdbench.transcript import TRANSCRIPT
from rdbench.verify_checks.base import BundleEpisode, CheckContext, finding, transcript_events


def relay_key(episode: BundleEpisode) -> str:
    """What the episodes of one relay share: their configuration without the seed."""
    result = episode.result
    return canonical_json([result.task_id, result.task_hash, result.agent,
                           result.agent_options, result.arm, result.scaffold, result.tools,
                           result.tool_variants, result.budget])


def predecessor_of(episode: BundleEpisode,
                   episodes: Sequence[BundleEpisode]) -> BundleEpisode | None:
    """The episode of `episodes` a relay episode follows (None for the first seed)."""
    key, seed = relay_key(episode), episode.result.seed
    earlier = [other for other in episodes
               if other.result.seed < seed and relay_key(other) == key]
    return max(earlier, key=lambda other: other.result.seed, default=None)


def _notes(episode: BundleEpisode, action: str) -> list[str] | None:
    """The texts of the transcript's scaffold events `action` (None: unreadable)."""
    events = transcript_events(episode)
    if isinstance(events, Finding):
        return None
    return [event.text for event in events
            if isinstance(event, ScaffoldEvent) and event.action == action]


def _handoff_file(episode: BundleEpisode) -> str | None:
    """The episode's handoff.md, None when it left none (or it is no text)."""
    path = episode.folder / HANDOFF
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def check_handoff(
    episode: BundleEpisode, task: TaskSpec, manifest: Manifest, context: CheckContext
) -> list[Finding]:
    """The notes an episode started with are its predecessor's handoff.md (handoff-not-from-
    predecessor), and its own handoff.md is the notes its transcript shows it writing
    (handoff-file-mismatch). The predecessor is looked up in `context.episodes` (the
    bundle's; empty: none but the episode itself)."""
    found: list[Finding] = []
    written = _notes(episode, "handoff_out")
    left = _handoff_file(episode)
    if written is not None and (left is not None or written) and (
            not written or left != written[-1]):
        found.append(finding("handoff-file-mismatch", (
            f"its {HANDOFF} is not the notes its transcript's handoff_out event records"
            if written else f"it holds a {HANDOFF} but its transcript records no handoff_out"),
            episode, HANDOFF))
    received = _notes(episode, "handoff_in") or []
    if not received:
        return found
    before = predecessor_of(episode, context.episodes or [episode])
    given = _handoff_file(before) if before is not None else None
    if before is None:
        why = (f"no episode of the same configuration with an earlier seed than "
               f"{episode.result.seed} is in the bundle")
    elif given is None:
        why = f"its predecessor {before.episode_id} left no {HANDOFF}"
    elif any(text != given for text in received):
        why = f"they differ from the {HANDOFF} of its predecessor {before.episode_id}"
    else:
        return found
    found.append(finding("handoff-not-from-predecessor", (
        f"the episode started with notes (a handoff_in event) that its predecessor did not "
        f"leave: {why}"), episode, TRANSCRIPT))
    return found
