"""The client's backoff: bounded, jittered, seeded, honouring the server's ``retry:``."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport._backoff import Backoff


def test_the_same_seed_gives_the_same_delays() -> None:
    first = Backoff(initial=0.1, cap=5.0, rng=random.Random(7))
    second = Backoff(initial=0.1, cap=5.0, rng=random.Random(7))
    assert [first.delay(n) for n in range(10)] == [second.delay(n) for n in range(10)]


def test_the_first_wait_after_a_server_retry_is_that_retry() -> None:
    backoff = Backoff(initial=0.1, cap=5.0, rng=random.Random(1))
    assert backoff.delay(0, server_retry=1.25) == 1.25


def test_a_server_retry_over_the_cap_is_capped() -> None:
    assert Backoff(initial=0.1, cap=2.0).delay(0, server_retry=30.0) == 2.0


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    attempt=st.integers(min_value=0, max_value=10_000),
    server_retry=st.one_of(st.none(), st.floats(min_value=0.0, max_value=60.0)),
)
def test_delays_stay_within_their_bounds(
    seed: int, attempt: int, server_retry: float | None
) -> None:
    backoff = Backoff(initial=0.1, cap=5.0, rng=random.Random(seed))
    delay = backoff.delay(attempt, server_retry)
    base = min(5.0, 0.1 if server_retry is None else server_retry)
    ceiling = min(5.0, base * 2.0 ** min(attempt, 64))
    assert 0 <= delay <= 5.0
    assert delay <= ceiling
    assert delay >= (base if attempt else ceiling / 2)


def test_the_ceiling_doubles_until_the_cap() -> None:
    backoff = Backoff(initial=0.1, cap=1.0, rng=random.Random(3))
    draws = [[backoff.delay(attempt) for _ in range(200)] for attempt in range(6)]
    assert [max(d) <= c for d, c in zip(draws, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], strict=True)] == [
        True
    ] * 6
    assert min(draws[5]) >= 0.5  # equal jitter: the upper half of the ceiling


@pytest.mark.parametrize(
    ("initial", "cap", "multiplier"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (0.1, 1.0, 0.5)]
)
def test_nonsense_settings_are_refused(initial: float, cap: float, multiplier: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial=initial, cap=cap, multiplier=multiplier)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1)
