"""Membership: the node's row in ``nodes`` and its heartbeat (DESIGN §4).

Registered when the actor starts (a failure to register fails the node's start),
beaten every heartbeat interval, marked stopped when the actor stops gracefully. A
missed beat is logged and tried again at the next interval; a row found missing or
marked stopped (an operator's cleanup) is registered again. Recovery never depends on
membership: the janitor judges leases only.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from runtime.node._hosted import HostedActor
from runtime.store import StoreError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from uuid import UUID

    from runtime.store import Store

__all__ = ["Membership"]

_logger = structlog.get_logger("runtime.node.membership")

#: Longest a clean stop waits to mark the row stopped.
_STOP_MARK_TIMEOUT = 5.0


class Membership(HostedActor[Any]):
    """Keeps this node's ``nodes`` row alive."""

    def __init__(
        self,
        *,
        store: Callable[[], Store],
        node_id: str,
        boot_id: UUID,
        interval: float,
        metadata: Callable[[], dict[str, Any]],
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._boot_id = boot_id
        self._interval = interval
        self._metadata = metadata
        self.beats = 0
        self.missed = 0

    async def _register(self) -> None:
        await self._store().register_node(
            node_id=self._node_id,
            boot_id=self._boot_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            metadata=self._metadata(),
        )

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        await self._register()
        _logger.info("node_registered", heartbeat_interval=self._interval)
        try:
            yield
        finally:
            with anyio.move_on_after(_STOP_MARK_TIMEOUT, shield=True):
                try:
                    await self._store().mark_node_stopped(self._node_id)
                except StoreError as error:
                    _logger.warning("node_stop_mark_failed", error=str(error))

    async def on_start(self) -> None:
        self.tasks.start_soon(self._beat_forever, name=f"heartbeat {self._node_id}")

    async def _beat_forever(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                if await self._store().node_heartbeat(self._node_id):
                    self.beats += 1
                else:
                    _logger.warning("node_row_missing_registering_again")
                    await self._register()
            except StoreError as error:
                self.missed += 1
                _logger.warning("node_heartbeat_failed", error=str(error), missed=self.missed)

    async def handle(self, message: Any) -> object:
        raise TypeError("membership takes no messages")
