"""An rdbench transcript (typed events) as Inspect's chat messages and transcript events.

The messages are what the agent and the model exchanged: the system prompt, the briefing, one
assistant turn per model reply (text, thinking, tool calls) and one tool message per tool call
holding the output the agent was shown. An agent without model events (oracle, null, a
command) gets one assistant turn per action, built from its action and observation events.
The Inspect events add what the messages alone do not show: each model call with its usage,
each tool call with its full output, every validation score, the final grade, errors,
retries and scaffold events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inspect_ai.event import (
    Event,
    InfoEvent,
    ModelEvent,
    ScoreEvent,
    ToolEvent,
)
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    Content,
    ContentReasoning,
    ContentText,
    GenerateConfig,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.scorer import Score
from inspect_ai.tool import ToolCall, ToolCallError, ToolInfo, ToolParams
from pydantic import ValidationError

from rdbench import records

SCORER = "rdbench"


def timestamp(text: str) -> datetime:
    """The time of an rdbench record (ISO 8601, UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def score_value(normalized: float | None, raw: float | None, valid: bool,
                message: str, **more: Any) -> Score:
    """An Inspect Score: the normalized score as its value (0 when there is none), the raw
    score, validity and the grader's message in its metadata."""
    return Score(value=normalized if normalized is not None else 0.0, explanation=message,
                 metadata={"raw_score": raw, "normalized_score": normalized, "valid": valid,
                           "message": message, **more})


def model_usage(usage: records.UsageRecord | dict[str, Any]) -> ModelUsage:
    """rdbench usage (a UsageRecord, or a model reply's usage dict) as Inspect's ModelUsage."""
    data = usage.model_dump() if isinstance(usage, records.UsageRecord) else usage
    input_tokens = int(data.get("input_tokens") or 0)
    output_tokens = int(data.get("output_tokens") or 0)
    cache_read = int(data.get("cache_read_tokens") or 0)
    cache_write = int(data.get("cache_write_tokens") or 0)
    total = int(data.get("total_tokens") or 0) or (input_tokens + output_tokens + cache_read
                                                    + cache_write)
    return ModelUsage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total,
                      input_tokens_cache_read=cache_read, input_tokens_cache_write=cache_write,
                      total_cost=data.get("cost_usd"))


def tool_info(definition: dict[str, Any]) -> ToolInfo:
    """A tool definition of the reset event (name, description, input_schema) as ToolInfo;
    a schema Inspect cannot take is left out (the name and description stay)."""
    try:
        parameters = ToolParams.model_validate(definition.get("input_schema") or {})
    except ValidationError:
        parameters = ToolParams()
    return ToolInfo(name=str(definition.get("name", "?")),
                    description=str(definition.get("description", "")), parameters=parameters)


def _request_texts(message: dict[str, Any]) -> list[str]:
    """The plain texts a user message of a model request holds (tool results left out:
    they are the tool messages), in either provider's wire format."""
    if message.get("role") != "user":
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [content] if content else []
    if isinstance(content, list):
        return [str(block.get("text", "")) for block in content
                if isinstance(block, dict) and block.get("type") == "text" and block.get("text")]
    return []


@dataclass
class Conversion:
    """The messages and events of one episode, built by walking its transcript in order."""

    briefing: str = ""
    messages: list[ChatMessage] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    tools: list[ToolInfo] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    _start: datetime | None = None
    _pending: list[ToolCall] = field(default_factory=list)
    _call: ToolCall | None = None
    _called_at: datetime | None = None
    _request_at: datetime | None = None
    _model_seen: bool = False
    _actions: int = 0

    def working(self, at: datetime) -> float:
        """Seconds from the episode's start to `at` (Inspect's working_start)."""
        return max(0.0, (at - self._start).total_seconds()) if self._start else 0.0

    def add(self, event: records.Event) -> None:
        """Add one rdbench event."""
        at = timestamp(event.t)
        if self._start is None:
            self._start = at
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event, at)

    def finish(self) -> None:
        """End the walk: an agent without model requests starts with the briefing it was
        shown (the reset observation) as its user turn."""
        if not self._model_seen and self.briefing:
            self.messages.insert(0, ChatMessageUser(content=self.briefing, source="input"))

    def _on_reset(self, event: records.ResetEvent, at: datetime) -> None:
        self.briefing = event.observation or event.instructions
        self.tools = [tool_info(definition) for definition in event.tool_definitions]
        self.events.append(InfoEvent(
            source="rdbench reset", timestamp=at, working_start=0.0,
            data={"task_id": event.task_id, "seed": event.seed, "tools": event.tools,
                  "budget": event.budget, "sandbox": event.sandbox}))

    def _on_model_request(self, event: records.ModelRequestEvent, at: datetime) -> None:
        if not self._model_seen:
            self._model_seen = True
            if event.system:
                self.messages.append(ChatMessageSystem(content=event.system))
        for message in event.messages:
            for text in _request_texts(message):
                self.messages.append(ChatMessageUser(content=text))
        self._request_at = at

    def _on_model_reply(self, event: records.ModelReplyEvent, at: datetime) -> None:
        if event.model not in self.models:
            self.models.append(event.model)
        content: list[Content] = []
        if event.thinking:
            content.append(ContentReasoning(reasoning=event.thinking))
        if event.text:
            content.append(ContentText(text=event.text))
        calls = [ToolCall(id=str(call.get("id") or f"call-{event.step}-{index}"),
                          function=str(call.get("tool") or call.get("name") or "?"),
                          arguments=dict(call.get("input") or {}))
                 for index, call in enumerate(event.tool_calls)]
        reply = ChatMessageAssistant(content=content, tool_calls=calls or None,
                                     model=event.model, source="generate")
        output = ModelOutput.from_message(reply, stop_reason="tool_calls" if calls else "stop")
        output.usage = model_usage(event.usage)
        start = self._request_at or at
        self.events.append(ModelEvent(
            model=event.model, input=list(self.messages), tools=self.tools, tool_choice="auto",
            config=GenerateConfig(), output=output, timestamp=start, completed=at,
            working_start=self.working(start), working_time=event.latency_s,
            metadata={"stop_reason": event.stop_reason}))
        self.messages.append(reply)
        self._pending = list(calls)
        self._request_at = None

    def _on_action(self, event: records.ActionEvent, at: datetime) -> None:
        self._actions += 1
        name = event.tool or "(malformed action)"
        arguments = dict(event.input) if event.input is not None else {"raw": event.raw}
        call = next((call for call in self._pending if call.function == name), None)
        if call is None and event.tool is None and self._pending:
            call = self._pending[0]  # a call the env could not take (an unknown tool)
        if call is not None:
            self._pending.remove(call)
        else:  # an agent without model events: one assistant turn per action
            call = ToolCall(id=f"step-{event.step}-{self._actions}", function=name,
                            arguments=arguments)
            self.messages.append(ChatMessageAssistant(content="", tool_calls=[call],
                                                      source="generate"))
        self._call, self._called_at = call, at

    def _on_observation(self, event: records.ObservationEvent, at: datetime) -> None:
        call = self._call or ToolCall(id=f"step-{event.step}", function=event.tool or "?",
                                      arguments={})
        shown = event.shown if event.shown is not None else event.text
        error = ToolCallError("timeout" if event.timed_out else "unknown", shown) \
            if event.is_error or event.timed_out else None
        self.messages.append(ChatMessageTool(
            content=shown, tool_call_id=call.id, function=call.function, error=error,
            metadata={"step": event.step, "exit_code": event.exit_code,
                      "truncated": event.truncated}))
        start = self._called_at or at
        self.events.append(ToolEvent(
            id=call.id, function=call.function, arguments=call.arguments, result=event.text,
            error=error, timestamp=start, completed=at, working_start=self.working(start),
            working_time=(at - start).total_seconds(), failed=bool(error) or None,
            metadata={"step": event.step, "shown": shown if shown != event.text else None,
                      "exit_code": event.exit_code, "truncated": event.truncated}))
        self._call = self._called_at = None

    def _on_scaffold(self, event: records.ScaffoldEvent, at: datetime) -> None:
        call = next((call for call in self._pending if call.function == event.action), None)
        if call is not None and "input" in event.details:  # a scaffold's own tool, answered
            self._pending.remove(call)
            self.messages.append(ChatMessageTool(content=event.text, tool_call_id=call.id,
                                                 function=call.function))
        self.events.append(InfoEvent(
            source=f"rdbench scaffold: {event.action}", timestamp=at,
            working_start=self.working(at),
            data={"action": event.action, "text": event.text, "worker": event.worker,
                  "details": _json(event.details)}))

    def _on_score(self, event: records.ScoreEvent, at: datetime) -> None:
        entry = {"step": event.step, "t": event.t, "raw_score": event.raw_score,
                 "normalized_score": event.normalized_score, "valid": event.valid,
                 "message": event.message, "grading_s": event.grading_s,
                 "elapsed_working_s": event.elapsed_working_s}
        self.validation.append(entry)
        self.events.append(ScoreEvent(
            score=score_value(event.normalized_score, event.raw_score, event.valid,
                              event.message, split="validation", step=event.step),
            intermediate=True, scorer=f"{SCORER} (validation)", timestamp=at,
            working_start=self.working(at)))

    def _on_grade(self, event: records.GradeEvent, at: datetime) -> None:
        self.events.append(ScoreEvent(
            score=score_value(event.normalized_score, event.raw_score, event.valid,
                              event.message, split="test", grading_s=event.grading_s),
            scorer=SCORER, timestamp=at, working_start=self.working(at)))

    def _on_error(self, event: records.ErrorEvent, at: datetime) -> None:
        kind = "infrastructure" if event.infrastructure else "agent" if event.agent else "tool"
        self.events.append(InfoEvent(source=f"rdbench error ({kind})", timestamp=at,
                                     working_start=self.working(at),
                                     data={"message": event.message, "step": event.step}))

    def _on_retry(self, event: records.RetryEvent, at: datetime) -> None:
        self.events.append(InfoEvent(source="rdbench model retry", timestamp=at,
                                     working_start=self.working(at),
                                     data={"attempt": event.attempt, "wait_s": event.wait_s,
                                           "error": event.error}))

    def _on_submit(self, event: records.SubmitEvent, at: datetime) -> None:
        self.events.append(InfoEvent(source="rdbench submit", timestamp=at,
                                     working_start=self.working(at), data={"step": event.step}))


def _json(value: Any) -> Any:
    """`value` with anything JSON cannot hold turned into text."""
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def convert(events: list[records.Event]) -> Conversion:
    """The Inspect messages and events of an episode's transcript. An agent without model
    events starts with the briefing it was shown (the reset observation) as the user turn."""
    conversion = Conversion()
    for event in events:
        conversion.add(event)
    conversion.finish()
    return conversion
