"""The one retry layer of the API adapters: backoff, `retry-after`, and the time it cost.

The SDKs' own retries are turned off, so a failed request is retried here and only here.
Time spent sleeping before a retry is added to the agent's `Usage.retry_wait_s`, which the
env leaves out of the episode's working time, and each retry is reported to the episode's
recorder as a `retry` event (its attempt, wait and error) before the wait begins.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from rdbench.agents.base import AgentError, ModelEventRecorder, Usage

log = structlog.get_logger()

T = TypeVar("T")
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER_S = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed API request is retried."""

    max_retries: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"Expected max_retries >= 0, got {self.max_retries}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("Retry delays must be >= 0 seconds")

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based): the server's
        `retry-after` if it gave one, else exponential backoff with jitter drawn from `rng`
        (the agent's seeded generator; the module's when None)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
        backoff = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return backoff * (rng or random).uniform(0.5, 1.0)


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (a number of seconds) headers."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except (TypeError, ValueError):
            continue  # an HTTP date: fall back to backoff
    return None


def with_retries(
    request: Callable[[], T],
    *,
    policy: RetryPolicy,
    retryable: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None],
    usage: Usage,
    what: str,
    record: ModelEventRecorder | None = None,
    rng: random.Random | None = None,
) -> T:
    """Call `request`, retrying errors `retryable` accepts; AgentError once retries run out.

    Errors `retryable` rejects propagate unchanged, for the caller to handle. Each retry is
    reported to `record` as a `retry` event before its wait; the jitter comes from `rng`.
    """
    attempt = 0
    while True:
        try:
            return request()
        except Exception as error:
            if not retryable(error):
                raise
            if attempt >= policy.max_retries:
                raise AgentError(
                    f"{what} failed after {attempt} retries: {type(error).__name__}: {error}"
                ) from error
            wait = policy.delay(attempt, retry_after(error), rng)
            message = f"{type(error).__name__}: {str(error)[:2000]}"
            log.warning("api.retry", what=what, attempt=attempt + 1, wait_s=round(wait, 3),
                        error=message[:200])
            if record is not None:
                record("retry", {"attempt": attempt + 1, "wait_s": round(wait, 3),
                                 "error": f"{what}: {message}"})
            time.sleep(wait)
            usage.retries += 1
            usage.retry_wait_s += wait
            attempt += 1
