"""Checking model events an agent reports from outside Python (the command protocol).

An event is (type, fields): the type one of MODEL_EVENTS, the fields those of its model in
rdbench.records without the ones the recorder adds (t, step, type, v). `check_model_event`
validates them against that model, so a malformed event is refused where it was sent, with
a message naming what is wrong, instead of breaking the transcript later.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from rdbench.records import EventBase, ModelReplyEvent, ModelRequestEvent, RetryEvent

MODEL_EVENTS: dict[str, type[EventBase]] = {
    "model_request": ModelRequestEvent,
    "model_reply": ModelReplyEvent,
    "retry": RetryEvent,
}
RECORDER_FIELDS = ("t", "step", "type", "v")


class ModelEventError(ValueError):
    """A model event that does not fit its record model; the message says which field."""


def discard(event_type: str, fields: dict[str, Any]) -> None:
    """The recorder of an agent that no episode has reset yet: records nothing."""


def check_model_event(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a valid `event_type` event, as given; ModelEventError when not valid."""
    model = MODEL_EVENTS.get(event_type)
    if model is None:
        raise ModelEventError(
            f"unknown model event type {event_type!r}; expected one of {sorted(MODEL_EVENTS)}"
        )
    reserved = sorted(name for name in RECORDER_FIELDS if name in fields)
    if reserved:
        raise ModelEventError(
            f"{event_type} event sets {reserved}, which rdbench adds itself; leave them out"
        )
    try:
        model.model_validate({**fields, "t": "", "step": 0})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(event)'}: {e['msg']}" for e in error.errors()
        )
        raise ModelEventError(f"{event_type} event is malformed: {problems}") from None
    return fields
