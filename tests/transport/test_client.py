"""``RuntimeClient`` against the real gateway: a node on the test's database, serving the
gateway on loopback, with a cutting proxy between client and gateway.

- a stream cut 5 times mid-run at seeded points still yields every event once, in order,
  exactly the log's;
- idempotent calls retried after their answer was lost write once (checked in the
  database);
- refusals arrive as the typed errors of their codes.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from tests.transport._http_proxy import HttpCutter
from tests.transport.conftest import Gateway, gateway_settings
from transport import KeyRing
from transport import client as wire
from transport._backoff import Backoff

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from runtime.config import NodeConfig

pytestmark = pytest.mark.anyio

FRAMES = 40
CUTS = 5
#: Frames appended only once every cut is made.
HELD_BACK = 5


@pytest.fixture
def node_config(node_config: NodeConfig) -> NodeConfig:
    """The gateway's test settings, with a short ``retry:`` so reconnections are quick."""
    return node_config.with_changes(gateway=gateway_settings(retry_base=20, retry_jitter=20))


@pytest.fixture
async def cutter(gateway: Gateway) -> AsyncIterator[HttpCutter]:
    host, port = gateway.node.address or ("127.0.0.1", 0)
    async with HttpCutter(host, port) as proxy:
        yield proxy


def tokens(gateway: Gateway, sub: str = "alice") -> Callable[[], str]:
    """A fresh token per attempt: the gateway refuses a token id seen on a mutation."""
    return lambda: gateway.token(sub, "runs:write")


def client_for(url: str, token: str | Callable[[], str], seed: int = 1) -> wire.RuntimeClient:
    return wire.RuntimeClient(
        url,
        token=token,
        backoff=Backoff(initial=0.01, cap=0.2, rng=random.Random(seed)),
        timeout=20.0,
        stream_read_timeout=20.0,
    )


async def rows(dsn: str, query: str, *params: object) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_stream_cut_five_times_mid_run_yields_the_log_once_and_in_order(
    gateway: Gateway, cutter: HttpCutter
) -> None:
    rng = random.Random(2026)
    async with (
        client_for(gateway.url, tokens(gateway)) as direct,
        client_for(cutter.url, tokens(gateway), seed=7) as cut,
    ):
        run = (await direct.start_run("echo", {"frames": FRAMES})).run
        # The echo run writes one event per frame: cut after these seqs, seeded, while
        # the appender keeps appending (events are in flight at each cut).
        points = sorted(rng.sample(range(2, FRAMES - 10), CUTS))
        seqs: list[int] = []
        cuts = 0
        # The last frames wait for the last cut: until then the run cannot have ended,
        # so every cut leaves the client short of its terminal event, and it reconnects.
        all_cut = anyio.Event()

        async def appender() -> None:
            for index in range(FRAMES):
                if index == FRAMES - HELD_BACK:
                    await all_cut.wait()
                await direct.append_frame(run.run_id, f"f{index}", "message", {"i": index})

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(appender)
                async with cut.stream(run.run_id) as events:
                    async for event in events:
                        seqs.append(event.seq)
                        # Events already buffered may still arrive after a cut, with
                        # no connection open to cut: count a cut only when it cut one.
                        if cuts < CUTS and event.seq >= points[cuts] and await cutter.cut():
                            cuts += 1
                            if cuts == CUTS:
                                all_cut.set()
                    assert events.reconnects >= CUTS
        log = [event.seq async for event in direct.iter_events(run.run_id, limit=7)]
        snapshot = await direct.snapshot(run.run_id)
    assert cuts == CUTS
    assert seqs == log == list(range(1, snapshot.run.last_seq + 1))
    assert snapshot.terminal is not None
    assert snapshot.terminal.type == "run.succeeded"
    assert snapshot.terminal.seq == seqs[-1]


async def test_retried_appends_starts_and_cancels_write_once(
    gateway: Gateway, cutter: HttpCutter
) -> None:
    dsn = gateway.node.dsn
    async with client_for(cutter.url, tokens(gateway)) as runtime:
        cutter.lose_answers(b"POST /v1/runs HTTP", 1)
        started = await runtime.start_run("echo", idempotency_key="order-7")
        assert not started.created  # the lost answer's attempt created it
        assert cutter.lost_answers == 1
        run_id = started.run.run_id
        keyed = "SELECT count(*) FROM runs WHERE idempotency_key = %s"
        assert await rows(dsn, keyed, "order-7") == 1

        cutter.lose_answers(b"/frames HTTP", 2)
        appended = await runtime.append_frame(run_id, "f-1", "message", {"n": 1})
        assert not appended.created
        assert cutter.lost_answers == 3
        stored = "SELECT count(*) FROM run_frames WHERE run_id = %s AND frame_id = %s"
        assert await rows(dsn, stored, run_id, "f-1") == 1

        cutter.lose_answers(b"/cancel HTTP", 1)
        canceled = await runtime.cancel(run_id, reason="enough")
        assert not canceled.requested
        with anyio.fail_after(30):
            finished = [event async for event in runtime.stream(run_id)]
    assert [event.type for event in finished].count("run.canceled") == 1
    requested = "SELECT count(*) FROM run_events WHERE run_id = %s AND type = %s"
    assert await rows(dsn, requested, run_id, "run.cancel_requested") == 1
    echoes = [event for event in finished if event.type == "echo"]
    assert [event.payload["frame_id"] for event in echoes] in ([], ["f-1"])


async def test_a_start_without_a_key_is_not_retried(gateway: Gateway, cutter: HttpCutter) -> None:
    async with client_for(cutter.url, tokens(gateway)) as runtime:
        cutter.lose_answers(b"POST /v1/runs HTTP", 1)
        with pytest.raises(wire.NetworkError):
            await runtime.start_run("echo")
    # The gateway did create it: the caller cannot know, which is why keys exist.
    assert await rows(gateway.node.dsn, "SELECT count(*) FROM runs") == 1


async def test_a_static_token_is_refused_on_a_retried_mutation(
    gateway: Gateway, cutter: HttpCutter
) -> None:
    async with client_for(cutter.url, gateway.token("alice", "runs:write")) as runtime:
        cutter.lose_answers(b"POST /v1/runs HTTP", 1)
        with pytest.raises(wire.Unauthenticated) as raised:
            await runtime.start_run("echo", idempotency_key="k")
    assert raised.value.code == "token_replayed"


async def test_refusals_arrive_typed_with_status_code_and_run(gateway: Gateway) -> None:
    async with client_for(gateway.url, tokens(gateway)) as alice:
        unknown = uuid.uuid4()
        with pytest.raises(wire.RunNotFound) as not_found:
            await alice.snapshot(unknown)
        assert (not_found.value.status, not_found.value.run_id) == (404, unknown)
        with pytest.raises(wire.UnknownRunType, match="echo"):
            await alice.start_run("no-such-type")
        run = (await alice.start_run("echo", {"frames": 1})).run
        await alice.append_frame(run.run_id, "only", "message")
        with anyio.fail_after(30):
            events = [event async for event in alice.stream(run.run_id)]
        assert events[-1].type == "run.succeeded"
        with pytest.raises(wire.RunTerminal) as terminal:
            await alice.append_frame(run.run_id, "late", "message")
        assert (terminal.value.status, terminal.value.code) == (409, "run_terminal")
        # At the last seq of a finished run the gateway answers 204: nothing to yield.
        assert [event async for event in alice.stream(run.run_id, cursor=events[-1].seq)] == []
        await alice.start_run("echo", {"frames": 1}, idempotency_key="k1")
        with pytest.raises(wire.RunConflict):
            await alice.start_run("echo", {"frames": 2}, idempotency_key="k1")
        page = await alice.events(run.run_id, after=0, limit=2)
        assert [event.seq for event in page.events] == [1, 2]
        with pytest.raises(wire.InvalidRequest):
            await alice.events(run.run_id, limit=0)
    async with client_for(gateway.url, tokens(gateway, "mallory")) as mallory:
        with pytest.raises(wire.Forbidden) as forbidden:
            await mallory.cancel(run.run_id)
        assert forbidden.value.status == 403
    forged = KeyRing({"test-2026": b"f" * 40}, "test-2026")
    async with client_for(gateway.url, gateway.token("alice", keyring=forged)) as forger:
        with pytest.raises(wire.Unauthenticated) as unauthenticated:
            await forger.snapshot(run.run_id)
        assert unauthenticated.value.status == 401
