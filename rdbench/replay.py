"""A readable replay of an episode's transcript.jsonl in the terminal (`rdbench transcript`).

Each line becomes a small block: the instructions the agent got (folded), each action (tool
and input), its observation (folded when long: the first and last lines, with a count of what
is hidden; `full=True` shows everything), the model's requests and replies (text, thinking,
tool calls), validation scores with their times, usage, retries, errors and the final grade.
A line that is not JSON or not a known event is shown as such; the replay goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.text import Text

from rdbench.records import (
    ActionEvent,
    ErrorEvent,
    Event,
    GradeEvent,
    ModelReplyEvent,
    ModelRequestEvent,
    ObservationEvent,
    RecordError,
    ResetEvent,
    RetryEvent,
    ScaffoldEvent,
    ScoreEvent,
    SubmitEvent,
    UsageEvent,
    load_result,
    parse_event,
)

TRANSCRIPT = "transcript.jsonl"
EVENT_TYPES = frozenset(
    kind.model_fields["type"].default for kind in get_args(get_args(Event)[0])
)
HEAD_LINES = 12
TAIL_LINES = 8
LINE_CHARS = 400  # a single very long line is cut too (the hidden characters are counted)


class Invalid:
    """A transcript line that is not a known event: its number, text and why."""

    def __init__(self, number: int, text: str, reason: str):
        self.number, self.text, self.reason = number, text, reason


def read_events(folder: str | Path) -> Iterator[Event | Invalid]:
    """The events of the transcript in the episode folder `folder` (or the file itself)."""
    path = Path(folder)
    if path.is_dir():
        path = path / TRANSCRIPT
    if not path.is_file():
        raise RecordError(f"{path}: no transcript here (give an episode folder, e.g. "
                          "runs/NAME/<episode>, that holds transcript.jsonl)")
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                yield Invalid(number, line.rstrip("\n"), f"not JSON ({error})")
                continue
            if not isinstance(data, dict):
                yield Invalid(number, line.rstrip("\n"), "not a JSON object")
                continue
            kind = data.get("type")
            if kind not in EVENT_TYPES:
                yield Invalid(number, line.rstrip("\n"), f"unknown event type {kind!r}")
                continue
            try:
                yield parse_event(data)
            except RecordError as error:
                yield Invalid(number, line.rstrip("\n"), f"not a valid {kind!r} event: "
                              f"{_problems(error)}")


def _problems(error: RecordError) -> str:
    """The validation problems behind `error`, on one line (field: what is wrong)."""
    cause = error.__cause__
    if not isinstance(cause, ValidationError):
        return str(error)
    return "; ".join(f"{'.'.join(str(part) for part in problem['loc'][1:]) or '?'}: "
                     f"{problem['msg']}" for problem in cause.errors()[:3])


def fold(text: str, *, full: bool = False, head: int = HEAD_LINES,
         tail: int = TAIL_LINES) -> Text:
    """`text` as shown: whole if short (or `full`), else its first `head` and last `tail`
    lines with a line saying how many lines (and characters) are hidden between them."""
    if full:
        return Text(text)
    lines = text.splitlines()
    shown: list[Text] = []
    if len(lines) > head + tail + 1:
        hidden = lines[head:-tail]
        kept = [*lines[:head], None, *lines[-tail:]]
    else:
        hidden, kept = [], list(lines)
    for line in kept:
        if line is None:
            chars = sum(len(hidden_line) + 1 for hidden_line in hidden)
            shown.append(Text(f"… {len(hidden)} lines hidden ({chars} characters; --full "
                              "shows them) …", style="dim italic"))
        elif len(line) > LINE_CHARS:
            cut = Text(line[:LINE_CHARS])
            cut.append(f" … {len(line) - LINE_CHARS} more characters", style="dim italic")
            shown.append(cut)
        else:
            shown.append(Text(line))
    return Text("\n").join(shown)


class Replay:
    """Renders one transcript's events, keeping the clock of its first event."""

    def __init__(self, full: bool = False):
        self.full = full
        self.start: datetime | None = None

    def when(self, event: Event) -> str:
        """The event's time: its clock time and the seconds since the transcript began."""
        try:
            moment = datetime.fromisoformat(event.t)
        except ValueError:
            return event.t
        if self.start is None:
            self.start = moment
        elapsed = (moment - self.start).total_seconds()
        return f"{moment.strftime('%H:%M:%S')} +{elapsed:.1f}s"

    def header(self, event: Event, title: str, style: str, detail: str = "") -> Text:
        """The block's first line: step, title (and a detail after it), time."""
        line = Text(f"[{event.step}] ", style="dim")
        line.append(title, style=style)
        line.append(detail, style=style.replace("bold", "").strip() or None)
        line.append(f"  {self.when(event)}", style="dim")
        return line

    def render(self, item: Event | Invalid) -> RenderableType:
        """One event (or invalid line) as a block of text."""
        if isinstance(item, Invalid):
            line = Text(f"line {item.number}: ", style="bold red")
            line.append(item.reason, style="red")
            return Group(line, _indent(fold(item.text, full=self.full, head=3, tail=0)))
        render = getattr(self, f"_{item.type}")
        block: RenderableType = render(item)
        return block

    def _reset(self, event: ResetEvent) -> RenderableType:
        parts: list[RenderableType] = [
            Rule(Text(f"episode: {event.task_id}, seed {event.seed}")),
            self.header(event, "reset", "bold"),
            _indent(_pairs(tools=", ".join(event.tools) or "-",
                           budget=_compact(event.budget) if event.budget else "-")),
        ]
        if event.tool_definitions:
            names = [str(d.get("name", "?")) for d in event.tool_definitions]
            parts.append(_indent(Text(f"tool definitions: {len(names)} ({', '.join(names)})",
                                      style="dim")))
        if event.instructions:
            parts.append(_indent(Text("instructions:", style="bold")))
            parts.append(_indent(fold(event.instructions, full=self.full, head=8, tail=2), 4))
        return Group(*parts)

    def _action(self, event: ActionEvent) -> RenderableType:
        if event.tool is None:
            return Group(self.header(event, "action (malformed)", "bold red"),
                         _indent(fold(event.raw or "", full=self.full)))
        title = Text(f"▶ {event.tool}")
        body: list[RenderableType] = [self.header(event, title.plain, "bold cyan")]
        for key, value in (event.input or {}).items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if "\n" in text:
                body.append(_indent(Text(f"{key}:", style="cyan")))
                body.append(_indent(fold(text, full=self.full), 4))
            else:
                line = Text(f"{key}: ", style="cyan")
                line.append_text(fold(text, full=self.full))
                body.append(_indent(line))
        return Group(*body)

    def _observation(self, event: ObservationEvent) -> RenderableType:
        facts = []
        if event.exit_code is not None:
            facts.append(f"exit {event.exit_code}")
        if event.is_error:
            facts.append("error")
        if event.timed_out:
            facts.append("timed out")
        if event.truncated or (event.shown is not None and event.shown != event.text):
            facts.append(f"agent saw {len(event.shown or '')} of {len(event.text)} characters")
        title = "◀ observation" + (f" ({', '.join(facts)})" if facts else "")
        style = "bold red" if event.is_error or event.timed_out else "bold green"
        return Group(self.header(event, title, style),
                     _indent(fold(event.text, full=self.full)))

    def _score(self, event: ScoreEvent) -> RenderableType:
        return Group(self.header(event, f"validation score {_score(event)}", "bold magenta"),
                     *self._message(event.message, event.grading_s))

    def _grade(self, event: GradeEvent) -> RenderableType:
        parts: list[RenderableType] = [
            Rule(Text("final grade")),
            self.header(event, f"final grade {_score(event)}", "bold magenta"),
            *self._message(event.message, event.grading_s),
        ]
        if event.details:
            parts.append(_indent(Text("details: ", style="dim")
                                 + fold(_compact(event.details), full=self.full, head=6,
                                        tail=2)))
        return Group(*parts)

    def _message(self, message: str, grading_s: float | None) -> list[RenderableType]:
        parts: list[RenderableType] = []
        if grading_s is not None:
            parts.append(_indent(Text(f"graded in {grading_s:.1f}s", style="dim")))
        if message:
            parts.append(_indent(fold(message, full=self.full, head=6, tail=2)))
        return parts

    def _usage(self, event: UsageEvent) -> RenderableType:
        fields = {"tokens": f"{event.total_tokens:,} (in {event.input_tokens:,}, "
                  f"out {event.output_tokens:,})", "cost": f"${event.cost_usd:.4f}",
                  "requests": str(event.requests)}
        if event.cache_read_tokens or event.cache_write_tokens:
            fields["cache"] = (f"read {event.cache_read_tokens:,}, "
                               f"write {event.cache_write_tokens:,}")
        if event.retries:
            fields["retries"] = f"{event.retries} (waited {event.retry_wait_s:.1f}s)"
        return self.header(event, "usage ", "dim bold",
                           ", ".join(f"{key} {value}" for key, value in fields.items()))

    def _error(self, event: ErrorEvent) -> RenderableType:
        kind = ("agent error" if event.agent else "infrastructure error"
                if event.infrastructure else "error")
        return Group(self.header(event, f"✗ {kind}", "bold red"),
                     _indent(fold(event.message, full=self.full)))

    def _submit(self, event: SubmitEvent) -> RenderableType:
        return self.header(event, "submitted", "bold yellow")

    def _retry(self, event: RetryEvent) -> RenderableType:
        return self.header(event, f"retry {event.attempt} after {event.wait_s:.1f}s: ",
                           "yellow", event.error)

    def _scaffold(self, event: ScaffoldEvent) -> RenderableType:
        worker = f" (worker {event.worker})" if event.worker is not None else ""
        parts: list[RenderableType] = [
            self.header(event, f"scaffold: {event.action}{worker}", "bold magenta")]
        if event.text:
            parts.append(_indent(fold(event.text, full=self.full)))
        if event.details:
            parts.append(_indent(fold(_compact(event.details), full=self.full, head=4,
                                      tail=1)))
        return Group(*parts)

    def _model_request(self, event: ModelRequestEvent) -> RenderableType:
        parts: list[RenderableType] = [
            self.header(event, f"model request ({event.model}, {len(event.messages)} new "
                        "message(s))", "bold blue")]
        if event.system:
            parts.append(_indent(Text("system prompt:", style="blue")))
            parts.append(_indent(fold(event.system, full=self.full, head=6, tail=2), 4))
        for message in event.messages:
            role = str(message.get("role", "?"))
            parts.append(_indent(Text(f"{role}:", style="blue")))
            parts.append(_indent(self._content(message.get("content")), 4))
        return Group(*parts)

    def _content(self, content: Any) -> RenderableType:
        """A message's content: a string, or a list of provider blocks."""
        if isinstance(content, str):
            return fold(content, full=self.full)
        if not isinstance(content, list):
            return fold(_compact(content), full=self.full)
        parts: list[RenderableType] = []
        for block in content:
            if not isinstance(block, dict):
                parts.append(fold(_compact(block), full=self.full))
            elif isinstance(block.get("text"), str):
                parts.append(fold(block["text"], full=self.full))
            elif block.get("type") == "tool_result" or "tool_use_id" in block \
                    or "tool_call_id" in block:
                parts.append(Text("tool result:", style="dim"))
                parts.append(self._content(block.get("content", "")))
            elif block.get("type") == "tool_use":
                parts.append(_tool_call(block))
            else:
                parts.append(fold(_compact(block), full=self.full, head=4, tail=1))
        return Group(*parts)

    def _model_reply(self, event: ModelReplyEvent) -> RenderableType:
        title = f"model reply ({event.model}, {event.latency_s:.1f}s"
        tokens = {key: value for key, value in event.usage.items() if isinstance(value, int)}
        if tokens:
            title += ", " + ", ".join(f"{key} {value}" for key, value in tokens.items())
        if event.stop_reason:
            title += f", stop: {event.stop_reason}"
        parts: list[RenderableType] = [self.header(event, title + ")", "bold blue")]
        if event.thinking:
            parts.append(_indent(Text("thinking:", style="italic blue")))
            parts.append(_indent(Text.assemble(fold(event.thinking, full=self.full),
                                               style="italic"), 4))
        if event.text:
            parts.append(_indent(Text("text:", style="blue")))
            parts.append(_indent(fold(event.text, full=self.full), 4))
        for call in event.tool_calls:
            parts.append(_indent(_tool_call(call)))
        return Group(*parts)


def _tool_call(call: dict[str, Any]) -> Text:
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    name = call.get("name") or function.get("name") or call.get("tool") or "?"
    arguments = call.get("input", call.get("arguments", function.get("arguments")))
    line = Text(f"tool call {name}", style="cyan")
    if arguments is not None:
        line.append(" ")
        line.append_text(fold(arguments if isinstance(arguments, str) else _compact(arguments),
                              head=6, tail=2))
    return line


def _score(event: ScoreEvent | GradeEvent) -> str:
    normalized = "-" if event.normalized_score is None else f"{event.normalized_score:.3f}"
    raw = "-" if event.raw_score is None else f"{event.raw_score:.4g}"
    return f"{normalized} (raw {raw}{'' if event.valid else ', invalid'})"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _pairs(**fields: str) -> Text:
    return Text("  ").join(Text(f"{key} {value}") for key, value in fields.items())


def _indent(renderable: RenderableType, spaces: int = 2) -> Padding:
    return Padding(renderable, (0, 0, 0, spaces), expand=False)


def replay(folder: str | Path, console: Console, *, full: bool = False) -> None:
    """Print the episode in `folder` (its transcript, then its result when it has one)."""
    replayer = Replay(full=full)
    for item in read_events(folder):
        console.print(replayer.render(item))
    path = Path(folder)
    if path.is_dir() and (path / "result.json").exists():
        try:
            result = load_result(path)
        except RecordError as error:
            console.print(Text(f"result.json: {error}", style="red"))
            return
        score = "-" if result.normalized_score is None else f"{result.normalized_score:.3f}"
        line = Text("result: ", style="bold")
        line.append(f"{result.outcome}, normalized score {score}, {result.steps} steps, "
                    f"working {result.working_s:.1f}s, cost ${result.usage.cost_usd:.4f}")
        if result.ended_by == "person_left":
            line.append(" (ended by the person leaving: their terminal closed)")
        console.print(Rule(), line)
    elif path.is_dir():
        console.print(Rule(), Text("no result.json: the episode did not finish",
                                   style="yellow"))
