"""Errors raised by the gateway package outside a request (``transport``).

::

    WardenError                 actors.errors
    └── TransportError          the gateway (this module)
        └── KeyConfigError      no usable token key: none configured for a public address,
                                or a local key file that cannot be used

Inside a request every refusal is an HTTP answer with a stable code instead
(``transport/_errors.py``, ``docs/gateway.md``).
"""

from __future__ import annotations

from actors import WardenError

__all__ = ["KeyConfigError", "TransportError"]


class TransportError(WardenError):
    """Root of the gateway's errors."""


class KeyConfigError(TransportError):
    """The gateway has no usable token key; the message says what to configure."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


for _error in (TransportError, KeyConfigError):
    _error.__module__ = "transport"
del _error
