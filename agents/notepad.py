"""notepad: the plain loop and a notepad the model writes, shown again in every request.

The model gets one more tool, `notepad`, which replaces the notepad's content; the scaffold
answers it itself (no step in the sandbox) and the chat loop records each write as a
`scaffold` event. Every request ends with the notepad's content (a text block at the end of
the last user message), so what the model wrote there survives when the oldest turns are
dropped to fit the context window. To try another kind of memory, copy this file and change
`request` (where and how the notes are shown) or `answer` (how a write changes them).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rdbench.agents.conversation import ToolRequest, Turn
from rdbench.agents.scaffold import TRIM_AFTER_OVERFLOW, Scaffold, ScaffoldContext

NOTEPAD_TOOL = {
    "name": "notepad",
    "description": (
        "Replace the content of your notepad: notes kept outside the conversation (your "
        "plan, what you learned, what to try next). The notepad is shown at the end of "
        "every request, even after old messages are removed to fit the context window."
    ),
    "input_schema": {
        "type": "object",
        "properties": {"content": {"type": "string", "description": "the new content"}},
        "required": ["content"],
    },
}


class Notepad(Scaffold):
    """Plain trimming, plus a notepad the model rewrites and always sees."""

    name = "notepad"
    defaults: ClassVar[dict[str, Any]] = {"max_chars": 20_000}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self.content = ""

    def tools(self) -> list[dict[str, Any]]:
        """The notepad tool."""
        return [NOTEPAD_TOOL]

    def start(self, context: ScaffoldContext) -> None:
        """A new episode starts with an empty notepad."""
        self.content = ""

    def answer(self, call: ToolRequest, context: ScaffoldContext) -> str:
        """Replace the notepad's content."""
        content = call.input.get("content")
        if not isinstance(content, str):
            return "Error: notepad needs {\"content\": \"the new text\"}"
        limit = self.settings["max_chars"]
        if len(content) > limit:
            return f"Error: the notepad holds at most {limit} characters, got {len(content)}"
        self.content = content
        return f"Notepad saved ({len(content)} characters)."

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """The (trimmed) history, then the notepad."""
        if self.near_limit(context):
            self.drop_oldest(context)
        if not self.content:
            return context.history
        return [*context.history, Turn.user(f"Your notepad:\n{self.content}")]

    def overflowed(self, context: ScaffoldContext) -> bool:
        """Drop at least half of the exchanges; False when only the newest is left."""
        return self.drop_oldest(context, TRIM_AFTER_OVERFLOW, overflowed=True) > 0
