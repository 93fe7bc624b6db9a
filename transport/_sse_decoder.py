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

from typing import Final, NamedTuple

__all__ = ["SSEDecoder", "SSEProtocolError", "ServerSentEvent"]

#: Default bound on one line (the server's event JSON is bounded by its payload limit).
MAX_LINE: Final = 1 << 20
#: Default bound on one message's data.
MAX_MESSAGE: Final = 4 << 20


class SSEProtocolError(ValueError):
    """The stream broke the bounds (or the encoding) the decoder accepts."""


class ServerSentEvent(NamedTuple):
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
    """Feed it chunks as they arrive; it returns the messages they completed.

    A chunk is split into lines once (C speed: ``bytes.split``), so its cost grows with
    its size, not with its size times its lines; only a chunk that holds a ``\\r`` pays
    for normalising its line ends first.
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_message: int = MAX_MESSAGE) -> None:
        self._max_line = max_line
        self._max_message = max_message
        self._pending = bytearray()
        self._skip_lf = False  # the previous chunk ended in \r: a leading \n continues it
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    @property
    def last_id(self) -> str | None:
        """The last event id set by the stream (the spec's "last event ID buffer")."""
        return self._last_id

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode ``chunk``; return the messages completed by it, in order."""
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()  # after the chunk's last line end: the next line's start
        out: list[ServerSentEvent] = []
        if lines:
            if self._pending:
                lines[0] = bytes(self._pending) + lines[0]
                self._pending.clear()
            for line in lines:
                if not line:
                    message = self._dispatch()
                    if message is not None:
                        out.append(message)
                else:
                    self._line(line)
        if rest:
            self._pending += rest
            if len(self._pending) > self._max_line:
                raise self._too_long()
        return out

    def _too_long(self) -> SSEProtocolError:
        return SSEProtocolError(f"an event-stream line is longer than {self._max_line} bytes")

    def _line(self, raw: bytes) -> None:
        if len(raw) > self._max_line:
            raise self._too_long()
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SSEProtocolError("an event-stream line is not UTF-8") from error
        name, colon, value = line.partition(":")
        if not name and colon:
            self.comments += 1
            return
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_message:
                raise SSEProtocolError(
                    f"an event-stream message is larger than {self._max_message} bytes"
                )
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # unknown fields are ignored (the spec's rule)

    def _dispatch(self) -> ServerSentEvent | None:
        data = self._data
        if not data and self._retry is None:
            self._event = ""
            return None
        message = ServerSentEvent(
            self._event or "message",
            "\n".join(data) if data else None,
            self._last_id,
            self._retry,
        )
        self._event = ""
        if data:
            self._data = []
            self._data_size = 0
        self._retry = None
        return message
