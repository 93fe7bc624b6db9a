"""The actor kernel: actors, refs, three-lane mailboxes, monitors, links and a registry.

Backend-neutral: runs on asyncio and trio through anyio, and never imports runtime/ or
transport/.
"""

from actors.errors import ActorError, WardenError

__all__ = ["ActorError", "WardenError"]
