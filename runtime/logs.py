"""Structured logs for the command line: JSON lines in production, a console renderer
on a terminal (DESIGN §11).

Only entry points (the ``warden`` command line) configure logging; library code never
does. Context such as ``node_id`` and ``run_id`` is bound with
``structlog.contextvars.bound_contextvars`` where the work starts (the node binds its id
around its tree, run actors bind their run) and merged into every event logged below.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Literal

import structlog

from runtime.store.logs import DroppingLoggerFactory

if TYPE_CHECKING:
    from typing import TextIO

    from structlog.typing import Processor

__all__ = ["LEVELS", "configure_logging"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""Level names as ``WARDEN_LOG_LEVEL`` spells them."""


def configure_logging(
    *,
    level: int = logging.WARNING,
    log_format: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Send structlog events at ``level`` and above to ``stream`` (stderr by default).

    ``auto`` renders for a person when ``stream`` is a terminal and as JSON lines
    otherwise (a file, a pipe, a log collector).
    """
    out = sys.stderr if stream is None else stream
    if log_format == "auto":
        log_format = "console" if out.isatty() else "json"
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        processors += [
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # A closed stream (stderr piped into `head`) drops lines, never fails the caller.
        logger_factory=DroppingLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
