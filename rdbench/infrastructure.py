"""Faults of the infrastructure (a sandbox that does not start, a lost engine connection, a
grader that crashed) told apart from the agent's, and retried a bounded number of times with
exponential backoff. What still fails is recorded as an infrastructure error, never a score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from rdbench.grading import GradingError
from rdbench.sandbox.base import SandboxError

log = structlog.get_logger()

T = TypeVar("T")

ATTEMPTS = 3
"""How many times an infrastructure step is tried in all (the first try and its retries)."""
BACKOFF_S = 2.0
"""The wait before the first retry; each later wait doubles it."""
_ENGINE_MODULES = {"docker", "requests", "urllib3"}  # the Docker SDK's transport errors


def backoff_s(retry: int) -> float:
    """The wait before retry number `retry` (1-based): BACKOFF_S, then doubling."""
    return BACKOFF_S * 2 ** (retry - 1)


def is_infrastructure_error(error: BaseException) -> bool:
    """True for a failure of the machinery (sandbox backend, engine, host, grader), not of
    the agent or of rdbench's own logic."""
    if isinstance(error, (SandboxError, GradingError, OSError)):
        return True
    return type(error).__module__.split(".")[0] in _ENGINE_MODULES


def describe(error: BaseException) -> str:
    """`error` as one line for records: its type and message."""
    return f"{type(error).__name__}: {error}"


class InfrastructureFailure(RuntimeError):
    """An infrastructure step failed on every attempt; `error` is the last failure."""

    def __init__(self, what: str, error: BaseException, retries: int):
        super().__init__(f"{what} failed after {retries + 1} attempts: {describe(error)}")
        self.error = error
        self.retries = retries


@dataclass(frozen=True)
class Retried(Generic[T]):
    """What a retried step gave, and how many retries it took."""

    value: T
    retries: int


def retry_infrastructure(
    work: Callable[[], T],
    *,
    what: str,
    wait: Callable[[float], None],
    on_fault: Callable[[int, BaseException, float], None] | None = None,
    attempts: int | None = None,
) -> Retried[T]:
    """Run `work`, retrying it after an infrastructure error: up to `attempts` (default
    ATTEMPTS) tries, waiting BACKOFF_S, 2*BACKOFF_S, ... between them with `wait(seconds)`
    (which may raise to stop). `on_fault(attempt, error, delay)` hears of each failure that
    will be retried. Any other error propagates at once; the last infrastructure error
    raises InfrastructureFailure."""
    tries = ATTEMPTS if attempts is None else attempts
    if tries < 1:
        raise ValueError(f"Expected attempts >= 1, got {tries}")
    for attempt in range(1, tries + 1):
        try:
            return Retried(work(), attempt - 1)
        except Exception as error:
            if not is_infrastructure_error(error):
                raise
            if attempt == tries:
                raise InfrastructureFailure(what, error, attempt - 1) from error
            delay = backoff_s(attempt)
            log.warning("infrastructure.retry", what=what, attempt=attempt,
                        wait_s=delay, error=describe(error))
            if on_fault is not None:
                on_fault(attempt, error, delay)
            wait(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
