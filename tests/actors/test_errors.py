"""The kernel's errors: one tree rooted in WardenError, typed fields, public module."""

from __future__ import annotations

import pytest

import actors
from actors import (
    ActorCrashed,
    ActorError,
    ActorKilled,
    ActorStartFailed,
    ActorStopped,
    AskTimeout,
    Crashed,
    Killed,
    MailboxFull,
    MessageRefused,
    NameTaken,
    Normal,
    RegistryFull,
    StartIgnored,
    StopTimeout,
    TooManyWatches,
    WardenError,
)

ERRORS: list[type[ActorError]] = [
    ActorCrashed,
    ActorKilled,
    ActorStartFailed,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageRefused,
    NameTaken,
    RegistryFull,
    StartIgnored,
    StopTimeout,
    TooManyWatches,
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda error: error.__name__)
def test_every_kernel_error_is_an_actor_error(error: type[ActorError]) -> None:
    assert issubclass(error, ActorError)
    assert issubclass(ActorError, WardenError)
    assert issubclass(WardenError, Exception)
    assert error.__module__ == "actors"
    assert getattr(actors, error.__name__) is error


def test_ask_timeout_is_also_a_timeout_error() -> None:
    assert issubclass(AskTimeout, TimeoutError)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ActorStopped("Worker#1", Killed()), "actor Worker#1 has stopped (killed)"),
        (StopTimeout("Worker#1", 3.0), "Worker#1 did not stop within 3s"),
        (StartIgnored("Worker#1"), "Worker#1 declined to start (on_start returned IGNORE)"),
        (MailboxFull("Worker#1", "data", 8), "data lane of Worker#1 is full (8 messages)"),
        (AskTimeout("Worker#1", 2.5), "Worker#1 did not reply within 2.5s"),
        (ActorCrashed("Worker#1"), "Worker#1 crashed while handling the request"),
        (
            ActorKilled("Worker#1"),
            "Worker#1 was killed while handling the request; the request was dropped",
        ),
        (
            ActorStartFailed("Worker#1", Crashed(KeyError("x"))),
            "Worker#1 failed to start (crashed: KeyError: 'x')",
        ),
        (NameTaken(("run", 1), "Worker#1"), "name ('run', 1) is already registered to Worker#1"),
        (RegistryFull(10), "the registry is full (10 names)"),
        (TooManyWatches("Worker#1", 4), "Worker#1 already watches 4 actors or children"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_messages_are_built_from_typed_fields(error: ActorError, message: str) -> None:
    assert str(error) == message


def test_fields_are_kept() -> None:
    full = MailboxFull("W#1", "control", 64)
    assert (full.actor, full.lane, full.capacity) == ("W#1", "control", 64)
    stopped = ActorStopped("W#1", Normal())
    assert (stopped.actor, stopped.reason) == ("W#1", Normal())
    timeout = AskTimeout("W#1", 1.0)
    assert (timeout.actor, timeout.timeout) == ("W#1", 1.0)
    taken = NameTaken("svc", "W#2")
    assert (taken.name, taken.holder) == ("svc", "W#2")
    assert RegistryFull(3).capacity == 3
    watches = TooManyWatches("W#1", 2)
    assert (watches.actor, watches.capacity) == ("W#1", 2)
    failed = ActorStartFailed("W#1", Killed())
    assert (failed.actor, failed.reason) == ("W#1", Killed())
    stop_timeout = StopTimeout("W#1", 2.0)
    assert (stop_timeout.actor, stop_timeout.timeout) == ("W#1", 2.0)
    assert isinstance(stop_timeout, TimeoutError)
    assert StartIgnored("W#1").actor == "W#1"
    assert ActorCrashed("W#1").actor == "W#1"
