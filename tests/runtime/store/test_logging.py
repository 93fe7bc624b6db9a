"""Logging can never raise into the writer or the listener (issue 8, item 5).

The application's log sink may fail: stdout piped into ``head`` raises
``BrokenPipeError`` on every write once ``head`` exits. The store's own log calls are
guarded, so a failing sink costs log lines, never appends or wake-ups; and
``DroppingLoggerFactory`` is a sink that drops and counts instead of raising.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import anyio
import pytest
import structlog

from runtime.store import DatabaseUnavailable, Listener, Store
from runtime.store._writer import WRITER_APPLICATION_NAME
from runtime.store.logs import DroppingLoggerFactory
from tests.runtime._helpers import leased_run, query, wait_blocked_by
from tests.runtime.store.test_append_paths import _row_lock

if TYPE_CHECKING:
    from runtime.store import StoreConfig

pytestmark = pytest.mark.anyio


class _BrokenPipe:
    """A structlog logger (and its factory) whose every write fails like a closed pipe."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object) -> _BrokenPipe:
        return self

    def msg(self, message: str) -> None:
        self.calls += 1
        raise BrokenPipeError(32, "Broken pipe")

    log = debug = info = warn = warning = error = critical = exception = msg


@pytest.fixture
def broken_sink() -> _BrokenPipe:
    sink = _BrokenPipe()
    structlog.configure(logger_factory=sink)  # restored after the test (tests/conftest.py)
    return sink


async def _kill(dsn: str, application_name: str) -> None:
    await query(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        (application_name,),
    )


async def test_a_failing_sink_never_stops_the_writer(
    store: Store, dsn: str, broken_sink: _BrokenPipe
) -> None:
    run, lease = await leased_run(store)
    assert await store.append_event(run.run_id, lease.epoch, "a") == 1
    # The writer's statement waits for a row lock; its backend is killed under it, so the
    # batch fails (outcome unknown) and the writer logs the failure into a broken pipe.
    async with _row_lock(dsn, run.run_id) as holder:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def doomed() -> None:
                    with pytest.raises(DatabaseUnavailable):
                        await store.append_event(run.run_id, lease.epoch, "lost")

                tg.start_soon(doomed)
                await wait_blocked_by(dsn, holder.info.backend_pid)
                await _kill(dsn, WRITER_APPLICATION_NAME)
        await holder.rollback()
    assert broken_sink.calls >= 1  # the failure was logged, into the broken pipe
    # The writer is alive: the next append commits, right after the surviving event.
    with anyio.fail_after(30):
        assert await store.append_event(run.run_id, lease.epoch, "b") == 2
    assert store.statistics().writer.failed_batches == 1


async def test_a_failing_sink_never_stops_the_listener(
    store: Store, dsn: str, config: StoreConfig, broken_sink: _BrokenPipe
) -> None:
    run, lease = await leased_run(store)
    async with Listener(dsn, config) as listener:
        with listener.watch(run.run_id) as watch:
            await _kill(dsn, "warden-listener")
            with anyio.fail_after(30):
                while listener.statistics().reconnects < 1:
                    await watch.wait()
            assert broken_sink.calls >= 1
            await store.append_event(run.run_id, lease.epoch, "after")
            with anyio.fail_after(30):
                while watch.latest_seq < 1:
                    await watch.wait()


def test_the_dropping_factory_counts_what_its_file_refuses() -> None:
    good = io.StringIO()
    sink = DroppingLoggerFactory(good)
    sink().info("one")
    assert good.getvalue() == "one\n"
    closed = io.StringIO()
    closed.close()
    sink = DroppingLoggerFactory(closed)
    logger = sink("any.name")
    logger.warning("lost")
    logger.error("lost too")
    assert sink.dropped == 2


async def test_structlog_through_the_dropping_factory_never_raises(store: Store, dsn: str) -> None:
    class _Pipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    sink = DroppingLoggerFactory(_Pipe())
    structlog.configure(logger_factory=sink)
    structlog.get_logger("app").info("hello")
    run, lease = await leased_run(store)
    assert await store.append_event(run.run_id, lease.epoch, "a") == 1
    assert sink.dropped >= 1
