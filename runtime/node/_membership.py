"""Membership: the node's heartbeats — its row in ``nodes``, and its runs' leases.

The node's row is registered when the actor starts (a failure to register fails the
node's start), beaten every heartbeat interval, marked stopped when the actor stops
gracefully. A missed beat is logged and tried again at the next interval; a row found
missing or marked stopped (an operator's cleanup) is registered again. Recovery never
depends on the node's row: the janitor judges leases only.

The actor also holds the node's :class:`~runtime.run.LeaseKeeper` open, which renews the
leases of all the node's run actors (many per statement). It lives here, not as a child
of its own, to keep the tree DESIGN §4 draws: both are the node's heartbeats, and the
``runs`` supervisor after it is restarted with it (``rest_for_one``), so no run actor
outlives the keeper it registered with.
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

    from runtime.run import LeaseKeeper
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
        leases: Callable[[], LeaseKeeper],
        on_leases: Callable[[LeaseKeeper], None],
    ) -> None:
        self._store = store
        self._leases = leases
        self._on_leases = on_leases
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
            async with self._leases() as keeper:
                self._on_leases(keeper)
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
