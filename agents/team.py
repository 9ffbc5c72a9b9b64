"""team: N workers (N sandboxes of the same task, each its own agent) share a message board;
at the end the workspace with the best validation score is submitted and graded.

`workers` above 1 makes the runner play a team episode (rdbench.team): it starts the
workers, gives each its seat (index, team size, the board) and, with `split_budget`, 1/N of
the budget each, so a team and a single agent compare at equal total budget. This file
decides what a worker is told and answers its two board tools; otherwise it is the plain loop.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rdbench.agents.base import AgentConfigError
from rdbench.agents.conversation import ToolRequest, Turn
from rdbench.agents.scaffold import Scaffold, ScaffoldContext, scaffold_class_for

Plain = scaffold_class_for("plain")

BOARD_TOOLS: list[dict[str, Any]] = [
    {
        "name": "board_post",
        "description": "Post a message on the board your team shares: what you found, what "
                       "you are trying, a score you reached. The other workers read it.",
        "input_schema": {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "what to post"}},
            "required": ["message"],
        },
    },
    {
        "name": "board_read",
        "description": "Read the other workers' posts you have not read yet, oldest first.",
        "input_schema": {"type": "object", "properties": {}},
    },
]


class Team(Scaffold):
    """One worker of a team: the plain loop plus the team's message board."""

    name = "team"
    defaults: ClassVar[dict[str, Any]] = {
        **Plain.defaults, "workers": 3, "split_budget": True, "max_post_chars": 4000}

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if self.settings["workers"] < 1:
            raise AgentConfigError(
                f"Scaffold 'team': workers must be 1 or more, got {self.settings['workers']}")
        self.plain = Plain(**{key: self.settings[key] for key in Plain.defaults})

    @property
    def workers(self) -> int:
        """How many workers (sandboxes) the team has."""
        return int(self.settings["workers"])

    def tools(self) -> list[dict[str, Any]]:
        """The board's tools, besides plain's."""
        return [*self.plain.tools(), *BOARD_TOOLS]

    def start(self, context: ScaffoldContext) -> None:
        """Tell the worker who it is and that the team shares a board."""
        self.plain.start(context)
        seat = context.info.seat
        if seat is None:
            return
        first = context.history[0]
        first.text = (
            f"{first.text}\n\nYou are worker {seat.index + 1} of a team of {seat.size}, each "
            "working on this same task in its own copy of the workspace. The team shares a "
            "message board: board_post to tell the others what you found or are trying, "
            "board_read to see their posts. At the end the workspace with the best "
            "validation score is the team's submission."
        )

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """As plain."""
        return self.plain.request(context)

    def overflowed(self, context: ScaffoldContext) -> bool:
        """As plain."""
        return self.plain.overflowed(context)

    def answer(self, call: ToolRequest, context: ScaffoldContext) -> str:
        """Post on the board, or read the others' new posts."""
        if call.tool not in ("board_post", "board_read"):
            return self.plain.answer(call, context)
        seat = context.info.seat
        if seat is None:
            return "Error: there is no team board in this episode; you work alone."
        if call.tool == "board_post":
            message = call.input.get("message") if isinstance(call.input, dict) else None
            if not isinstance(message, str) or not message.strip():
                return "Error: board_post needs a non-empty `message` (text)."
            limit = self.settings["max_post_chars"]
            if len(message) > limit:
                return (f"Error: a post holds at most {limit} characters, this one has "
                        f"{len(message)}; post a shorter message.")
            seat.board.post(seat.index, message)
            context.note("board_post", message)
            return "Posted; the other workers see it when they read the board."
        posts = seat.board.read(seat.index)
        if not posts:
            return "No new posts."
        return "\n\n".join(f"[worker {post.worker + 1}] {post.text}" for post in posts)
