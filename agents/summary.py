"""summary: near the end of the context window, the model summarises its work so far, and
the summary replaces the old turns.

When the last prompt filled `at` of the context window, the scaffold asks the model (an
extra request, without running any tool) to write down what it learned and did. The
history then becomes the briefing with that summary, followed by the newest exchange (the
model's last tool calls and their answers, so every kept call stays answered). The summary
is recorded as a `scaffold` event "summary". To try another memory policy, copy this file
and change `INSTRUCTION` (what the model is asked to keep) or `request` (when it is asked,
and what replaces the old turns).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rdbench.agents.base import AgentConfigError
from rdbench.agents.conversation import ContextOverflow, Turn
from rdbench.agents.scaffold import TRIM_AFTER_OVERFLOW, Scaffold, ScaffoldContext, exchanges

INSTRUCTION = (
    "Your context window is nearly full, so the conversation so far will be replaced by a "
    "summary that you write now. Do not call a tool. Write, for yourself, everything you "
    "will need to go on: what the task asks, what you found in the workspace, what you "
    "changed and where, the scores you measured, what worked and what did not, and the "
    "next steps you planned."
)


class Summary(Scaffold):
    """At `at` of the context window, old turns give way to the model's own summary;
    `keep` is how many of the newest exchanges stay as they were (at least 1)."""

    name = "summary"
    defaults: ClassVar[dict[str, Any]] = {"at": 0.7, "keep": 1}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if not 0.1 <= self.settings["at"] < 1 or self.settings["keep"] < 1:
            raise AgentConfigError(
                f"summary: at must be between 0.1 and 1 and keep at least 1, got "
                f"{self.settings}")

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """The history, summarised first when the last prompt neared the limit."""
        if self.near_limit(context, self.settings["at"]):
            self.summarise(context)
        return context.history

    def summarise(self, context: ScaffoldContext) -> bool:
        """Replace all but the newest exchanges by the model's summary; False when there
        is nothing old enough to replace."""
        groups = exchanges(context.history)
        keep = self.settings["keep"]
        if len(groups) <= keep:
            return False
        try:
            summary = context.ask(INSTRUCTION)
        except ContextOverflow:  # too long even to summarise: drop instead
            return self.drop_oldest(context, TRIM_AFTER_OVERFLOW, overflowed=True) > 0
        kept = [turn for group in groups[-keep:] for turn in group]
        context.history = [Turn.user(
            f"{context.briefing}\n\n[Earlier messages were replaced by the summary you "
            f"wrote of your work so far:]\n\n{summary}"), *kept]
        context.note("summary", summary, turns_replaced=sum(map(len, groups[:-keep])),
                     prompt_tokens=context.last_prompt_tokens)
        return True

    def overflowed(self, context: ScaffoldContext) -> bool:
        """The server refused the prompt: summarise now, or drop the oldest turns."""
        if self.summarise(context):
            return True
        return self.drop_oldest(context, TRIM_AFTER_OVERFLOW, overflowed=True) > 0
