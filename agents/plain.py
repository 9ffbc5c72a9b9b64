"""plain: the tool loop as it is, the oldest turns dropped when the context fills up."""

from __future__ import annotations

from rdbench.agents.scaffold import Scaffold


class Plain(Scaffold):
    """The model sees the whole conversation; nothing is remembered apart from it."""

    name = "plain"
