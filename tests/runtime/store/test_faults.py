"""The store under faults (issue 8, items 2-4): outages, partitions, killed connections.

A :class:`~tests.runtime._proxy.FaultProxy` in front of the server refuses connections
(the database is away), black-holes them (a partition) or resets them;
``pg_terminate_backend`` kills them from the server's side. No call may hang past its
deadline, errors must say what happened, and the store must come back by itself.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from runtime.store import (
    DatabaseUnavailable,
    Store,
    StoreOverloaded,
    StoreTimeout,
    _db,
)
from tests.runtime._helpers import leased_run, wait_blocked_by
from tests.runtime._proxy import FaultProxy
from tests.runtime.store.test_append_paths import _row_lock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


# -- item 2: an outage says what happened, and calls come back within about a second --


async def test_an_outage_names_the_host_and_calls_come_back_soon_after(
    dsn: str, config: StoreConfig
) -> None:
    quick = config.model_copy(update={"pool_reconnect_delay": 0.2, "pool_min_size": 2})
    async with FaultProxy(dsn) as proxy, Store(proxy.dsn, quick) as store:
        run, _ = await leased_run(store)
        proxy.refuse()
        await proxy.cut()
        for _ in range(3):
            with anyio.fail_after(10), pytest.raises(DatabaseUnavailable) as caught:
                await store.get_run(run.run_id)
            assert caught.value.host == "127.0.0.1"  # the host, not "overloaded"
            assert "refused" in caught.value.reason or "closed" in caught.value.reason
        # A long outage: with psycopg_pool's own backoff (1, 2, 4, 8 s...) ten attempts
        # would take minutes, and its next attempt after the return would come seconds
        # late. The store keeps trying every pool_reconnect_delay.
        with anyio.fail_after(30):
            await proxy.wait_refused(10)
        proxy.heal()
        # Calls work again within about a second of the database's return.
        with anyio.fail_after(3):
            while True:
                try:
                    assert (await store.get_run(run.run_id)).run_id == run.run_id
                    break
                except DatabaseUnavailable:
                    continue  # each failed call waits about the reconnect delay
        assert store.statistics().pool["connection_failures"] >= 10


async def test_a_busy_pool_is_overloaded_not_unavailable(dsn: str, config: StoreConfig) -> None:
    one = config.model_copy(update={"pool_min_size": 1, "pool_max_size": 1, "pool_timeout": 0.5})
    async with Store(dsn, one) as store:
        run, _ = await leased_run(store)
        async with _row_lock(dsn, run.run_id) as holder:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    # request_cancel waits for the row lock on the only pooled connection.
                    tg.start_soon(store.request_cancel, run.run_id)
                    await wait_blocked_by(dsn, holder.info.backend_pid)
                    with pytest.raises(StoreOverloaded) as caught:
                        await store.get_run(run.run_id)
                    await holder.rollback()
    assert "every connection of the pool is in use (1 open" in str(caught.value)


# -- item 3: no call outlives its deadline during a partition ----------------------------


def _calls(store: Store, run_id: UUID, epoch: int) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "renew_lease": lambda: store.renew_lease(run_id, owner_node="node-a", epoch=epoch),
        "get_run": lambda: store.get_run(run_id),
        "append_event": lambda: store.append_event(run_id, epoch, "step"),
        "acquire_lease": lambda: store.acquire_lease(run_id, owner_node="node-b"),
        "read_events": lambda: store.read_events(run_id),
    }


@pytest.mark.parametrize(
    "call", ["renew_lease", "get_run", "append_event", "acquire_lease", "read_events"]
)
async def test_no_call_outlives_its_deadline_in_a_partition(
    dsn: str, config: StoreConfig, call: str
) -> None:
    # statement_timeout (server side) cannot help: the server never hears of it. Nor may
    # psycopg's cancel path (a cancel request, then a wait: 5 s + 5 s) run on the caller's
    # time.
    quick = config.model_copy(
        update={
            "call_timeout": 1.0,
            "append_timeout": 1.0,
            "append_lock_timeout": 0.5,
            "statement_timeout": 3.0,
        }
    )
    async with FaultProxy(dsn) as proxy, Store(proxy.dsn, quick) as store:
        run, lease = await leased_run(store)
        assert await store.append_event(run.run_id, lease.epoch, "warm") == 1
        proxy.black_hole()
        with anyio.fail_after(quick.call_timeout + 1.5), pytest.raises(StoreTimeout) as caught:
            await _calls(store, run.run_id, lease.epoch)[call]()
        assert caught.value.host == "127.0.0.1"
        assert "outcome is unknown" in str(caught.value)
        await proxy.cut()
        proxy.heal()
        with anyio.fail_after(30):
            assert (await store.get_run(run.run_id)).run_id == run.run_id


async def test_a_renewal_never_outlives_the_lease_it_renews(dsn: str, config: StoreConfig) -> None:
    # The call deadline is long; the lease has 2 s left: the renewal gives up before.
    patient = config.model_copy(update={"call_timeout": 30.0})
    async with FaultProxy(dsn) as proxy, Store(proxy.dsn, patient) as store:
        run, _ = await store.create_run(owner="o", session_id="s", run_type="t")
        lease = await store.acquire_lease(run.run_id, owner_node="node-a", ttl=2.0)
        proxy.black_hole()
        with anyio.fail_after(2.5), pytest.raises(StoreTimeout) as caught:
            await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
        assert caught.value.operation == "renew_lease"
        assert caught.value.seconds < 2.0
        await proxy.cut()
        proxy.heal()
        # Its time is up: lost, without asking the database.
        assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch) is None


async def test_connections_carry_tcp_keepalive_and_a_user_timeout(
    dsn: str, config: StoreConfig
) -> None:
    async with FaultProxy(dsn) as proxy:  # a TCP connection, whatever the server's
        conn = await _db.connect(_db.conninfo(proxy.dsn, config))
        try:
            sock = socket.socket(fileno=conn.pgconn.socket)
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == round(
                    config.tcp_keepalive_idle
                )
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == int(
                    config.tcp_user_timeout * 1000
                )
            finally:
                sock.detach()  # the fd stays psycopg's
        finally:
            await conn.close()


# -- item 4: idle connections killed by the server do not fail the next call -------------


async def _kill_the_store_s_connections(dsn: str) -> None:
    """Terminate every other backend of the test's database, and wait until they exit."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as killer:
        cur = await killer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        pids = [pid for (pid,) in await cur.fetchall()]
        assert pids
        await killer.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)
        )
        while True:  # one round trip per turn; bounded by the caller's fail_after
            cur = await killer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            )
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return


async def test_idle_connections_killed_by_the_server_do_not_fail_the_next_call(
    store: Store, dsn: str
) -> None:
    run, lease = await leased_run(store)
    assert await store.append_event(run.run_id, lease.epoch, "before") == 1  # the writer's
    assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    with anyio.fail_after(30):
        await _kill_the_store_s_connections(dsn)  # a failover, a pooler, an operator
    assert await store.append_event(run.run_id, lease.epoch, "after") == 2
    assert await store.renew_lease(run.run_id, owner_node="node-a", epoch=lease.epoch)
    assert (await store.get_run(run.run_id)).last_seq == 2
    assert store.statistics().writer.failed_batches == 0
