"""Errors raised by the actor kernel.

Every error Warden raises derives from :class:`WardenError`; each package roots its own
branch in it::

    WardenError
    └── ActorError                  the actor kernel (this module)

The rest of the tree grows as the kernel lands.
"""

from __future__ import annotations

__all__ = ["ActorError", "WardenError"]


class WardenError(Exception):
    """Root of every error Warden raises on purpose."""


class ActorError(WardenError):
    """Root of the actor kernel's errors."""


for _error in (WardenError, ActorError):
    _error.__module__ = "actors"
