"""A structlog sink that drops, and counts, the lines its file refuses.

Library code never configures logging; an application does, once, at its entry point.
When it logs to a stream that may go away (stdout piped into ``head``, a closed terminal),
``structlog.PrintLogger`` raises ``BrokenPipeError`` into whatever code logged. This
factory's loggers write one line per event and drop it when the file refuses it::

    import sys, structlog
    from runtime.store.logs import DroppingLoggerFactory

    sink = DroppingLoggerFactory(sys.stderr)
    structlog.configure(logger_factory=sink)
    ...
    sink.dropped  # lines the stream refused

The ``warden`` command line configures structlog this way.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

__all__ = ["DroppingLogger", "DroppingLoggerFactory"]


class DroppingLogger:
    """Writes each message as one line to its factory's file; never raises from ``msg``."""

    __slots__ = ("_factory",)

    def __init__(self, factory: DroppingLoggerFactory) -> None:
        self._factory = factory

    def msg(self, message: str) -> None:
        """Write ``message`` and a newline, or count it as dropped."""
        self._factory.write(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class DroppingLoggerFactory:
    """A structlog ``logger_factory`` whose loggers drop what ``file`` refuses.

    Attributes:
        dropped: lines the file refused (``OSError``, or ``ValueError`` once closed).
    """

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file if file is not None else sys.stderr
        self._lock = threading.Lock()  # worker threads log too
        self.dropped = 0

    def __call__(self, *args: object) -> DroppingLogger:
        """A logger writing to this factory's file (structlog passes the logger name)."""
        return DroppingLogger(self)

    def write(self, message: str) -> None:
        """Write one line, or count it as dropped."""
        with self._lock:
            try:
                self._file.write(message + "\n")
                self._file.flush()
            except (OSError, ValueError):
                self.dropped += 1
