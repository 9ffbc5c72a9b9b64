"""successor: at the end of an episode the model writes notes for its successor; the next
episode of the same task and agent in the run (the next seed) starts with them.

A run of k seeds with this scaffold is a relay: each episode (with its share of the budget
you give it) starts where the last one's understanding ended. The runner links the episodes
and carries the notes (rdbench.relay); this file decides what the model is asked and where
the notes appear. Apart from that it is the plain loop (trimming when the context fills up).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rdbench.agents.conversation import Turn
from rdbench.agents.scaffold import Scaffold, ScaffoldContext, scaffold_class_for

Plain = scaffold_class_for("plain")

NOTES_HEADING = "Notes from the previous attempt"

ASK_FOR_NOTES = (
    "The episode is over ({reason}). Another agent like you will next work on this same task "
    "from the starting workspace, with the same tools and budget, and will read only what you "
    "write now. Write notes for it: what you learned about the task, what worked and what did "
    "not, the best score you reached and how, and what to try next. Be concrete and brief; "
    "plain text, no more than {limit} characters."
)


class Successor(Scaffold):
    """The plain loop, plus notes handed from each episode of a relay to the next."""

    name = "successor"
    relay = True
    defaults: ClassVar[dict[str, Any]] = {**Plain.defaults, "notes_chars": 4000}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self.plain = Plain(**{key: self.settings[key] for key in Plain.defaults})

    def start(self, context: ScaffoldContext) -> None:
        """Put the predecessor's notes (if any) after the briefing, in the first user turn."""
        self.plain.start(context)
        notes = context.info.handoff
        if notes:
            first = context.history[0]
            first.text = f"{first.text}\n\n{NOTES_HEADING}:\n{notes.strip()}"
            context.note("handoff_in", notes)

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """As plain."""
        return self.plain.request(context)

    def overflowed(self, context: ScaffoldContext) -> bool:
        """As plain."""
        return self.plain.overflowed(context)

    def end(self, context: ScaffoldContext, reason: str) -> str | None:
        """Ask the model for notes for its successor; they are the episode's handoff."""
        limit = int(self.settings["notes_chars"])
        notes = context.ask(ASK_FOR_NOTES.format(reason=reason, limit=limit)).strip()
        return notes[:limit] or None
