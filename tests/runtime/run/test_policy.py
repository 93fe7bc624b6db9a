"""The handler-failure policy: classification and seeded backoff, pure."""

from __future__ import annotations

import itertools
import uuid

import pytest

from runtime.run import NondeterministicHandler, RunSettings, UnknownRunType
from runtime.run.policy import bad_result, classify, error_type_name, next_attempt
from runtime.run.subtree import restart_backoff

RUN = uuid.UUID(int=7)
SETTINGS = RunSettings(attempts=4, retry_backoff_base=0.5, retry_backoff_max=3.0)


def test_a_handler_exception_is_transient() -> None:
    failure = classify(ValueError("nope"))
    assert (failure.reason, failure.error_class, failure.error_type) == (
        "handler_error",
        "transient",
        "ValueError",
    )
    assert failure.payload() == {
        "reason": "handler_error",
        "error_class": "transient",
        "error_type": "ValueError",
        "message": "nope",
    }


def test_nondeterminism_bad_results_and_unknown_types_are_permanent() -> None:
    nondeterministic = classify(NondeterministicHandler(RUN, 5, "a", "b"))
    assert (nondeterministic.reason, nondeterministic.seq) == ("nondeterministic_handler", 5)
    assert nondeterministic.payload()["seq"] == 5
    assert classify(UnknownRunType("x", [])).reason == "unknown_run_type"
    assert bad_result("not JSON").error_class == "permanent"
    for failure in (nondeterministic, bad_result("x")):
        assert next_attempt(failure, 1, settings=SETTINGS, run_id=RUN) is None


def test_error_type_names_say_where_the_class_lives() -> None:
    assert error_type_name(KeyError()) == "KeyError"
    assert error_type_name(NondeterministicHandler(RUN, 1, "", "")) == (
        "runtime.run.NondeterministicHandler"
    )


def test_backoff_doubles_with_jitter_up_to_the_cap_then_gives_up() -> None:
    failure = classify(RuntimeError())
    delays = [next_attempt(failure, n, settings=SETTINGS, run_id=RUN) for n in range(1, 5)]
    assert delays[3] is None  # the fourth failure exhausts attempts=4
    for delay, base in zip(delays[:3], (0.5, 1.0, 2.0), strict=True):
        assert delay is not None
        assert base * 0.9 <= delay <= base * 1.1
    capped = RunSettings(attempts=10, retry_backoff_base=0.5, retry_backoff_max=1.0)
    late = next_attempt(failure, 6, settings=capped, run_id=RUN)
    assert late is not None
    assert late <= 1.1


def test_backoff_is_the_same_for_the_same_run_and_seed() -> None:
    failure = classify(RuntimeError())
    first = next_attempt(failure, 2, settings=SETTINGS, run_id=RUN)
    assert first == next_attempt(failure, 2, settings=SETTINGS, run_id=RUN)
    assert first != next_attempt(failure, 2, settings=SETTINGS, run_id=uuid.UUID(int=8))
    seeded = RunSettings(attempts=4, retry_seed=3)
    assert next_attempt(failure, 2, settings=seeded, run_id=RUN) == next_attempt(
        failure, 2, settings=seeded, run_id=uuid.UUID(int=8)
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lease_ttl": 0}, "lease_ttl must be a positive"),
        ({"lease_ttl": float("inf")}, "lease_ttl must be a positive"),
        ({"lease_ttl": 3, "heartbeat_interval": 1.5}, "below half the lease_ttl"),
        ({"attempts": 0}, "attempts must be an integer of at least 1"),
        ({"max_tasks": True}, "max_tasks must be an integer"),
        ({"retry_backoff_base": 2.0, "retry_backoff_max": 1.0}, "at least retry_backoff_base"),
        ({"task_cancel_grace": -1}, "task_cancel_grace must be a positive"),
        ({"retry_seed": -1}, "retry_seed must be an integer of at least 0"),
        ({"mailbox": {}}, "mailbox must be a MailboxConfig"),
    ],
)
def test_settings_refuse_bad_values(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings(**fields)  # type: ignore[arg-type]


def test_settings_derive_the_heartbeat_and_renewal_window() -> None:
    settings = RunSettings(lease_ttl=15)
    assert settings.heartbeat == 5
    assert settings.renewal_window == 12.5


def test_a_crashed_run_actor_restarts_within_milliseconds_then_backs_off() -> None:
    run_id = uuid.UUID(int=12345)
    backoff = restart_backoff(run_id)
    rng = backoff.rng()
    delays = [backoff.delay(attempt, rng) for attempt in range(8)]
    assert delays[0] <= 0.0025  # the first restart waits a few milliseconds at most
    # Five times longer each time (jitter 10 %) until the cap.
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[:6]))
    assert max(delays) <= 5.0 * 1.1  # capped, with jitter
    again = restart_backoff(run_id)
    assert [again.delay(attempt, again.rng()) for attempt in range(1)] == delays[:1]  # seeded
