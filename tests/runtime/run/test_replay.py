"""ReplayLog: matching a handler's calls against a log, pure (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from runtime.run import NondeterministicHandler
from runtime.run.replay import (
    ReplayLog,
    digest,
    emit_call,
    frame_call,
    memory_call,
    task_call,
)
from runtime.store import JSON, Event, _codec

RUN = uuid.UUID(int=1)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def events(*entries: tuple[str, JSON]) -> list[Event]:
    return [
        Event(RUN, seq, type_, payload, 1, 1, NOW, b"", b"")
        for seq, (type_, payload) in enumerate(entries, start=1)
    ]


def emitted(type_: str, payload: JSON) -> object:
    return emit_call(type_, _codec.encode(payload, what="payload", limit=1 << 20))


def test_calls_match_in_order_and_bookkeeping_is_skipped() -> None:
    log = ReplayLog(
        RUN,
        events(
            ("run.cancel_requested", {"reason": None}),
            ("token", {"i": 0}),
            ("task.started", {"name": "search", "tool_call_id": "t1", "args_sha256": "ab"}),
            ("run.attempt_failed", {"attempt": 1}),
            ("frame.consumed", {"frame_seq": 1, "frame_id": "f"}),
            ("task.succeeded", {"name": "search", "tool_call_id": "t1", "result": [1]}),
            ("memory.read", {"scope": "run", "key": "k", "found": False}),
        ),
    )
    assert log.head == 7
    assert log.remaining == 4
    assert log.match(emitted("token", {"i": 0})).seq == 2  # type: ignore[arg-type]
    assert log.match(task_call("search", "ab")).seq == 3
    completion = log.completion("t1")
    assert completion is not None
    assert completion.seq == 6
    assert log.completion("t2") is None
    assert log.match(frame_call()).seq == 5
    assert log.replaying
    assert log.match(memory_call("memory.read", "run", "k")).seq == 7
    assert log.remaining == 0
    with pytest.raises(LookupError):
        log.match(frame_call())


def test_payloads_compare_by_canonical_json() -> None:
    log = ReplayLog(RUN, events(("step", {"b": 1, "a": [1, 2]})))
    # Key order and integral floats do not matter: JSON is JSON.
    assert log.match(emitted("step", {"a": [1, 2.0], "b": 1})).seq == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "got"),
    [
        (emitted("other", {"n": 1}), "event 'other'"),
        (emitted("step", {"n": 2}), "event 'step' (payload sha256"),
        (task_call("step", digest(b"[]")), "task 'step' started"),
        (frame_call(), "a frame consumed"),
    ],
)
def test_a_different_call_raises_naming_the_seq(call: object, got: str) -> None:
    log = ReplayLog(RUN, events(("run.cancel_requested", None), ("step", {"n": 1})))
    with pytest.raises(NondeterministicHandler) as raised:
        log.match(call)  # type: ignore[arg-type]
    error = raised.value
    assert (error.run_id, error.seq) == (RUN, 2)
    assert error.expected.startswith("event 'step' (payload sha256")
    assert error.got.startswith(got)
    assert log.remaining == 1  # nothing consumed


def test_a_memory_write_must_match_its_value_version_and_ttl() -> None:
    written: dict[str, JSON] = {
        "scope": "session",
        "key": "k",
        "value_sha256": digest(b"1"),
        "expected_version": None,
        "ttl": None,
        "version": 3,
        "conflict_version": None,
    }
    log = ReplayLog(RUN, events(("memory.written", written)))
    with pytest.raises(NondeterministicHandler):
        log.match(memory_call("memory.written", "session", "k", digest(b"2"), None, None))
    event = log.match(memory_call("memory.written", "session", "k", digest(b"1"), None, None))
    assert event.seq == 1


def test_unmatched_names_the_next_logged_call() -> None:
    log = ReplayLog(RUN, events(("step", None)))
    error = log.unmatched("the handler returned")
    assert (error.seq, error.got) == (1, "the handler returned")


def test_a_log_with_a_gap_is_refused() -> None:
    entries = events(("a", None), ("b", None))
    with pytest.raises(ValueError, match="not gap-free at seq 2"):
        ReplayLog(RUN, [entries[1]])
