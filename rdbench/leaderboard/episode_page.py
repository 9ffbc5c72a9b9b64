"""One episode's page: its result, the verifier's findings, the instructions, a time line
of its validation scores, then its transcript event by event (the model's text and tool
calls, actions, observations folded), and the final grade."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from rdbench.leaderboard.aggregate import BoardRow, episode_score
from rdbench.leaderboard.inputs import Submission, SubmissionEpisode
from rdbench.leaderboard.page import frame, number, status_badge
from rdbench.records import (
    ActionEvent,
    ErrorEvent,
    Event,
    GradeEvent,
    ModelReplyEvent,
    ModelRequestEvent,
    ObservationEvent,
    ResetEvent,
    RetryEvent,
    ScoreEvent,
    SubmitEvent,
    UsageEvent,
)

FOLD_CHARS = 600  # longer texts are folded (a <details> the reader opens)


def episode_page(submission: Submission, episode: SubmissionEpisode, row: BoardRow) -> str:
    """The HTML page of `episode` (linked from the table; links back to it)."""
    result = episode.result
    parts = [
        '<p><a href="../../index.html">&larr; leaderboard</a></p>',
        f"<h1>{escape(result.task_id)}: {escape(row.agent)}</h1>",
        f"<p>Episode <code>{escape(episode.episode_id)}</code> of "
        f"{escape(submission.name)} {status_badge(submission.status)}</p>",
        _summary(submission, episode),
        "<h2>Verifier's findings</h2>",
        _findings(submission, episode),
        "<h2>Validation scores</h2>",
        _timeline(episode),
        "<h2>Transcript</h2>",
        _events(episode.events),
        "<h2>Final grade</h2>",
        _final(episode),
    ]
    return frame(f"{result.task_id} {row.agent} {episode.episode_id}", "\n".join(parts))


def _summary(submission: Submission, episode: SubmissionEpisode) -> str:
    result = episode.result
    counted = episode_score(submission, episode)
    rows = [("task", f"{result.task_id} {result.task_version}"), ("agent", result.agent),
            ("seed", str(result.seed)), ("outcome", result.outcome),
            ("normalized score (claimed)", number(result.normalized_score)),
            ("normalized score (counted)", number(counted)),
            ("raw score", number(result.raw_score, ".6g")), ("steps", str(result.steps)),
            ("working time", f"{result.working_s:.1f} s"),
            ("cost", f"${result.usage.cost_usd:.4f}"),
            ("tokens", str(result.usage.total_tokens)),
            ("started", result.started_at), ("finished", result.finished_at)]
    if result.ended_by == "person_left":
        rows.insert(4, ("ended by", "the person leaving (their terminal closed mid-episode)"))
    if result.recording is not None:
        rows.append(("terminal session", f"recorded in {result.recording} (asciinema v2): "
                     f"rdbench transcript <episode folder> --play"))
    body = "".join(f'<tr><th class="name">{escape(name)}</th><td class="name">'
                   f"{escape(value)}</td></tr>" for name, value in rows)
    return f'<table id="summary">{body}</table>'


def _findings(submission: Submission, episode: SubmissionEpisode) -> str:
    report = submission.verified
    if report is None:
        return "<p>This submission was not verified.</p>"
    mine = [f for f in report.findings if f.episode_id == episode.episode_id]
    shared = [f for f in report.findings if f.episode_id is None]
    if not mine and not shared:
        return f"<p>None: verdict {escape(report.verdict)}.</p>"
    items = [f'<li class="finding-{f.severity}"><code>{escape(f.code)}</code> '
             f"({f.severity}) {escape(f.message)}"
             + (f" <code>{escape(f.path)}</code>" if f.path else "")
             + ("" if f.episode_id else " (the whole bundle)") + "</li>"
             for f in [*mine, *shared]]
    return f'<ol id="findings">{"".join(items)}</ol>'


def _timeline(episode: SubmissionEpisode) -> str:
    """An inline SVG: validation scores (dots) and the final grade (a diamond) against the
    agent's working time."""
    points = [(e.elapsed_working_s or 0.0, e.normalized_score) for e in episode.events
              if isinstance(e, ScoreEvent) and e.normalized_score is not None]
    final = episode.result.normalized_score
    if not points and final is None:
        return "<p>No scores.</p>"
    end = max([episode.result.working_s, *(t for t, _ in points)]) or 1.0
    top = max([1.0, final or 0.0, *(s for _, s in points)]) * 1.1
    width, height, left, bottom = 640, 200, 40, 24

    def x(t: float) -> float:
        return left + (width - left - 10) * t / end

    def y(score: float) -> float:
        return (height - bottom) * (1 - score / top) + 4

    marks = [f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - 10}" y2="{y(0):.1f}" '
             'stroke="#999"/>',
             f'<line x1="{left}" y1="{y(1):.1f}" x2="{width - 10}" y2="{y(1):.1f}" '
             'stroke="#ccc" stroke-dasharray="4 3"/>',
             f'<text x="4" y="{y(1) + 4:.1f}" font-size="11">1.0</text>',
             f'<text x="4" y="{y(0) + 4:.1f}" font-size="11">0</text>',
             f'<text x="{width - 10}" y="{height - 4}" font-size="11" text-anchor="end">'
             f"working time {end:.1f} s</text>"]
    for t, score in points:
        marks.append(f'<circle class="validation" cx="{x(t):.1f}" cy="{y(score):.1f}" r="4" '
                     f'fill="#3b6fc4"><title>validation {score:.3f} at {t:.1f} s</title>'
                     "</circle>")
    if final is not None:
        fx, fy = x(episode.result.working_s), y(final)
        marks.append(f'<path class="final" d="M{fx:.1f} {fy - 6:.1f} l6 6 l-6 6 l-6 -6 z" '
                     f'fill="#d08a00"><title>final grade {final:.3f}</title></path>')
    listed = "".join(f"<li>{t:.1f} s: {s:.3f}</li>" for t, s in points) or \
        "<li>no validation scores (the score tool was not used)</li>"
    return (f'<svg id="timeline" width="{width}" height="{height}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(marks)}</svg>'
            f"<ul>{listed}</ul>")


def _folded(text: str, summary: str, open_: bool = False) -> str:
    if len(text) <= FOLD_CHARS and not summary:
        return f"<pre>{escape(text)}</pre>"
    lines = text.count("\n") + 1
    return (f"<details{' open' if open_ else ''}><summary>{escape(summary)} ({lines} lines, "
            f"{len(text)} characters)</summary><pre>{escape(text)}</pre></details>")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _tool_input(tool: str | None, given: dict[str, Any] | None) -> str:
    if given and set(given) == {"command"} and isinstance(given["command"], str):
        return f"<pre>$ {escape(given['command'])}</pre>"
    if given and set(given) == {"code"} and isinstance(given["code"], str):
        return f"<pre>{escape(given['code'])}</pre>"
    return f"<pre>{escape(_json(given))}</pre>"


def _event(event: Event) -> str:
    if isinstance(event, ResetEvent):
        return (f"<p>Tools: {escape(', '.join(event.tools))}; budget "
                f"<code>{escape(_json(event.budget))}</code></p>"
                f'<div id="instructions">{_folded(event.instructions, "instructions", True)}'
                "</div>")
    if isinstance(event, ModelRequestEvent):
        system = _folded(event.system, "system prompt") if event.system else ""
        return system + _folded(_json(event.messages), f"{len(event.messages)} message(s) "
                                "sent to the model")
    if isinstance(event, ModelReplyEvent):
        text = f'<div class="text"><pre>{escape(event.text)}</pre></div>' if event.text else ""
        thinking = _folded(event.thinking, "thinking") if event.thinking else ""
        calls = "".join(
            f'<pre class="call">{escape(str(call.get("name", "?")))}('
            f"{escape(_json(call.get('input', call.get('arguments'))))})</pre>"
            for call in event.tool_calls)
        return thinking + text + calls
    if isinstance(event, ActionEvent):
        if event.tool is None:
            return f"<p>malformed action</p><pre>{escape(event.raw or '')}</pre>"
        return f"<p><b>{escape(event.tool)}</b></p>{_tool_input(event.tool, event.input)}"
    if isinstance(event, ObservationEvent):
        status = [f"exit {event.exit_code}"] if event.exit_code is not None else []
        status += ["error"] * event.is_error + ["timed out"] * event.timed_out
        status += ["truncated"] * event.truncated
        return _folded(event.text, "observation" + (f" ({', '.join(status)})" if status
                                                    else ""))
    if isinstance(event, ScoreEvent):
        return (f"<p>validation score {number(event.normalized_score)} (raw "
                f"{number(event.raw_score, '.6g')}, {'valid' if event.valid else 'invalid'}) "
                f"at {number(event.elapsed_working_s, '.1f')} s working time</p>"
                + (f"<pre>{escape(event.message)}</pre>" if event.message else ""))
    if isinstance(event, UsageEvent):
        return (f"<p>{event.total_tokens} tokens, ${event.cost_usd:.4f}, {event.requests} "
                "request(s)</p>")
    if isinstance(event, ErrorEvent):
        who = "agent" if event.agent else "infrastructure" if event.infrastructure else "tool"
        return f"<p>{who} error</p><pre>{escape(event.message)}</pre>"
    if isinstance(event, SubmitEvent):
        return "<p>The agent submitted.</p>"
    if isinstance(event, RetryEvent):
        return (f"<p>API call failed (attempt {event.attempt}), retried after "
                f"{event.wait_s:.1f} s</p><pre>{escape(event.error)}</pre>")
    if isinstance(event, GradeEvent):
        return (f"<p>final grade {number(event.normalized_score)} (raw "
                f"{number(event.raw_score, '.6g')}, {'valid' if event.valid else 'invalid'})"
                "</p>" + (f"<pre>{escape(event.message)}</pre>" if event.message else ""))
    return f"<pre>{escape(event.model_dump_json())}</pre>"


def _events(events: list[Event]) -> str:
    items = [f'<li class="{event.type}"><span class="kind">{escape(event.type.replace("_", " "))}'
             f" &middot; step {event.step} &middot; {escape(event.t)}</span>{_event(event)}</li>"
             for event in events]
    return f'<ol class="events" id="events">{"".join(items)}</ol>'


def _final(episode: SubmissionEpisode) -> str:
    result = episode.result
    grades = [e for e in episode.events if isinstance(e, GradeEvent)]
    details = ""
    if grades and grades[-1].details:
        details = _folded(_json(grades[-1].details), "grader's details")
    return (f'<p id="final">normalized {number(result.normalized_score)}, raw '
            f"{number(result.raw_score, '.6g')}, {'valid' if result.valid else 'invalid'}; "
            f"ended by {escape(result.outcome)}"
            + (f" ({escape(result.limit_hit)})" if result.limit_hit else "") + "</p>"
            + (f"<pre>{escape(result.message)}</pre>" if result.message else "") + details)
