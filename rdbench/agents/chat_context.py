"""What the chat loop shows a scaffold: `ChatContext`, its `ScaffoldContext`
(rdbench.agents.scaffold) for one episode."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from rdbench.agents.base import TaskInfo
from rdbench.agents.conversation import ToolAnswer, Turn
from rdbench.agents.scaffold import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from rdbench.agents.chat import ChatAgent

log = structlog.get_logger()


class ChatContext:
    """The episode in progress as a scaffold sees it: the task, the briefing, the history
    (which the scaffold may rewrite), the context window and how full the last prompt was.

    Besides the ScaffoldContext protocol it tells the trimming helpers of `Scaffold` the
    agent's `trim_at` (share of the window at which plain trimming starts) and the
    `chars_per_token` measured on the last request.
    """

    def __init__(self, agent: ChatAgent, info: TaskInfo, briefing: str):
        self._agent = agent
        self.info = info
        self.briefing = briefing
        self.history: list[Turn] = [Turn.user(briefing)]
        self.context_limit = agent.context_limit
        self.trim_at = agent.trim_at
        self.last_prompt_tokens = 0
        self.chars_per_token = CHARS_PER_TOKEN
        self.scaffold_tools = {tool["name"] for tool in agent.scaffold.tools()}

    def ask(self, instruction: str, turns: list[Turn] | None = None) -> str:
        """An extra request: `turns` (default: the history), then `instruction`; the
        model's text. Recorded and charged like any request; no tool call is run."""
        return self._agent.ask(instruction, self.history if turns is None else turns)

    def note(self, action: str, text: str = "", **details: Any) -> None:
        """Record a `scaffold` event (and count it in the usage's extra)."""
        seat = self.info.seat
        self.info.record("scaffold", {"action": action, "text": text, "details": details,
                                      "worker": seat.index if seat is not None else None})
        counts = self._agent.usage().extra.setdefault("scaffold", {})
        counts[action] = counts.get(action, 0) + 1
        log.info("scaffold.note", scaffold=self._agent.scaffold.name, action=action)


def answer_open_calls(turns: list[Turn]) -> list[Turn]:
    """`turns`, with the calls of a last assistant turn answered as not run (a request may
    not leave a tool call unanswered)."""
    if not turns or turns[-1].role != "assistant" or not turns[-1].calls:
        return list(turns)
    answers = [ToolAnswer(call, "(not run)") for call in turns[-1].calls]
    return [*turns, Turn.user("", answers)]
