"""Benchmarks measure the kernel, not a log sink: structlog is filtered at ERROR."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["quiet_logs"]


def quiet_logs() -> None:
    """Drop log events below ERROR (a supervisor logs every restart at INFO or WARNING;
    what that costs depends on where a deployment sends its logs), and print the rest
    to stderr, away from the results."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
