"""Where rdbench's logs go: the standard logging machinery, unless a program says otherwise.

Library code logs with `structlog.get_logger()`. Imported as a library, rdbench binds structlog
to the standard `logging` module (loggers named after the modules, `rdbench.*`) with a
NullHandler on `rdbench`, so a program that configures nothing sees nothing, and one that
configures `logging` sees rdbench's events there. Only the CLI prints logs (to stderr).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LOGGER_NAME = "rdbench"


def use_standard_logging() -> None:
    """Send structlog's events to the standard `logging` module (silent unless configured)."""
    logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def use_standard_logging_unless_configured() -> None:
    """use_standard_logging(), unless the program configured structlog already."""
    if not structlog.is_configured():
        use_standard_logging()


def log_to_stderr(*, verbose: bool, json_lines: bool) -> None:
    """The CLI's logging: warnings (everything with `verbose`) to stderr, as a console line
    for people or as JSON lines for machines."""
    level = logging.INFO if verbose or json_lines else logging.WARNING
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
