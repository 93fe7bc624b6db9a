"""The store's own logging, which can never raise into the code that logs.

The writer, the listener, the notifier and the pool's callbacks log through a
:class:`StoreLogger`: a structlog logger whose calls swallow (and count) any exception
from the processors or the sink, such as a ``BrokenPipeError`` when stdout is piped into
``head``. A log line is worth less than the append or the wake-up it describes. The store
never configures structlog itself: that is the application's choice (the ``warden``
command line uses :class:`runtime.store.logs.DroppingLoggerFactory`).
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["StoreLogger"]


class StoreLogger:
    """A structlog logger for one store module whose calls never raise.

    Attributes:
        dropped: log calls that raised and were dropped.
    """

    __slots__ = ("_logger", "dropped")

    def __init__(self, name: str) -> None:
        self._logger = structlog.get_logger(name)
        self.dropped = 0

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        try:
            getattr(self._logger, level)(event, **fields)
        except Exception:
            # Never into the writer, the listener or a pool callback; counted instead.
            self.dropped += 1
