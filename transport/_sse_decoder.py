"""An incremental, bounded decoder of ``text/event-stream`` bytes (the WHATWG rules).

Pure: bytes in, messages out, no I/O. Lines end in ``\\r\\n``, ``\\n`` or ``\\r`` (a
``\\r`` at the end of one chunk may be followed by the ``\\n`` of the next); a line that
starts with ``:`` is a comment (a heartbeat); ``field: value`` drops one space after the
colon; ``data`` lines join with ``\\n``; ``id`` containing NUL and non-numeric ``retry``
are ignored; an empty line dispatches the message. Every buffer is bounded: a line
longer than ``max_line`` bytes, or a message whose data grows past ``max_message``
bytes, raises :class:`SSEProtocolError` instead of growing memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["SSEDecoder", "SSEProtocolError", "ServerSentEvent"]

#: Default bound on one line (the server's event JSON is bounded by its payload limit).
MAX_LINE: Final = 1 << 20
#: Default bound on one message's data.
MAX_MESSAGE: Final = 4 << 20


class SSEProtocolError(ValueError):
    """The stream broke the bounds (or the encoding) the decoder accepts."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched message.

    ``id`` is the last event id the stream set (kept across messages, per the spec);
    ``retry`` the reconnection time in milliseconds when this message set one.
    A message with no ``data`` line only carries ``retry`` (or nothing): ``data`` is
    ``None`` then.
    """

    event: str
    data: str | None
    id: str | None
    retry: int | None


class SSEDecoder:
    """Feed it chunks as they arrive; it returns the messages they completed."""

    def __init__(self, *, max_line: int = MAX_LINE, max_message: int = MAX_MESSAGE) -> None:
        self._max_line = max_line
        self._max_message = max_message
        self._pending = bytearray()
        self._skip_lf = False  # the previous chunk ended in \r: a leading \n continues it
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._has_data = False
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    @property
    def last_id(self) -> str | None:
        """The last event id set by the stream (the spec's "last event ID buffer")."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode ``chunk``; return the messages completed by it, in order."""
        out: list[ServerSentEvent] = []
        start = 0
        if self._skip_lf and chunk[:1] == b"\n":
            start = 1
        self._skip_lf = False
        size = len(chunk)
        while start < size:
            cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            ends = [index for index in (cr, lf) if index != -1]
            if not ends:
                self._pending += chunk[start:]
                self._check_pending()
                return out
            end = min(ends)
            self._pending += chunk[start:end]
            self._check_pending()
            line = bytes(self._pending)
            self._pending.clear()
            if chunk[end : end + 1] == b"\r":
                if end + 1 == size:
                    self._skip_lf = True
                    start = end + 1
                elif chunk[end + 1 : end + 2] == b"\n":
                    start = end + 2
                else:
                    start = end + 1
            else:
                start = end + 1
            message = self._line(line)
            if message is not None:
                out.append(message)
        return out

    def _check_pending(self) -> None:
        if len(self._pending) > self._max_line:
            raise SSEProtocolError(f"an event-stream line is longer than {self._max_line} bytes")

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SSEProtocolError("an event-stream line is not UTF-8") from error
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_message:
                raise SSEProtocolError(
                    f"an event-stream message is larger than {self._max_message} bytes"
                )
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None  # unknown fields are ignored (the spec's rule)

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._has_data and self._retry is None:
            self._event = ""
            return None
        message = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data) if self._has_data else None,
            id=self._last_id,
            retry=self._retry,
        )
        self._event = ""
        self._data = []
        self._data_size = 0
        self._has_data = False
        self._retry = None
        return message
