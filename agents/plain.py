"""plain: the tool loop as it is, the oldest turns dropped when the context fills up.

This is the scaffold every other one starts from. To make your own, copy this file (into
agents/ to ship it, or anywhere to load it as `--scaffold path/to/mine.py`), rename the
class and its `name`, and override the hooks of rdbench.agents.scaffold.Scaffold you need:
`request` (the turns the model sees), `tools` and `answer` (tools the scaffold answers
itself), `overflowed` (shrink the history when the server says it is too long), `start`
and `end`. Settings go in `defaults` and are given as `--scaffold mine(key=value)`.
"""

from __future__ import annotations

from rdbench.agents.conversation import Turn
from rdbench.agents.scaffold import TRIM_AFTER_OVERFLOW, Scaffold, ScaffoldContext


class Plain(Scaffold):
    """The model sees the whole conversation; near the end of the context window (the
    agent's `trim_at`) the oldest exchanges are dropped, and nothing else is kept."""

    name = "plain"

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """The history, its oldest exchanges dropped when the last prompt neared the limit."""
        if self.near_limit(context):
            self.drop_oldest(context)
        return context.history

    def overflowed(self, context: ScaffoldContext) -> bool:
        """Drop at least half of the exchanges; False when only the newest is left."""
        return self.drop_oldest(context, TRIM_AFTER_OVERFLOW, overflowed=True) > 0
