"""Restart intensity window and backoff, as pure functions of the time they are given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisors import Backoff, InvalidFlags, RestartIntensity


def test_more_than_max_restarts_within_the_window_is_refused() -> None:
    intensity = RestartIntensity(max_restarts=3, max_seconds=10)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert intensity.record(3.0) is False


def test_the_window_is_inclusive_like_otp() -> None:
    intensity = RestartIntensity(max_restarts=1, max_seconds=5)
    assert intensity.record(0.0)
    # A restart exactly max_seconds later still counts the first one (OTP keeps R >= Now-T).
    assert not intensity.record(5.0)
    intensity = RestartIntensity(max_restarts=1, max_seconds=5)
    assert intensity.record(0.0)
    assert intensity.record(5.0001)


@given(
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0.1, max_value=10),
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=40),
)
def test_record_matches_a_brute_force_count(
    max_restarts: int, max_seconds: float, gaps: list[float]
) -> None:
    intensity = RestartIntensity(max_restarts, max_seconds)
    now = 0.0
    history: list[float] = []
    for gap in gaps:
        now += gap
        history.append(now)
        in_window = [t for t in history if t >= now - max_seconds]
        allowed = intensity.record(now)
        assert allowed == (len(in_window) <= max_restarts)
        if not allowed:
            return  # the supervisor gives up here


def test_intensity_zero_allows_no_restart_at_all() -> None:
    # OTP allows intensity 0: the first restart is already one too many.
    intensity = RestartIntensity(max_restarts=0, max_seconds=5)
    assert intensity.record(0.0) is False


@pytest.mark.parametrize(
    ("max_restarts", "max_seconds"),
    [(-1, 5), (1, 0), (1, -1), (True, 5), (1.5, 5), (1, "5"), (1, float("nan"))],
)
def test_invalid_intensity_is_refused(max_restarts: int, max_seconds: float) -> None:
    with pytest.raises(InvalidFlags):
        RestartIntensity(max_restarts, max_seconds)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_bounded_and_reproducible(attempt: int, seed: int) -> None:
    backoff = Backoff(initial=0.5, factor=2.0, maximum=20.0, jitter=0.2, seed=seed)
    first = [backoff.delay(n, rng) for rng in [backoff.rng()] for n in range(attempt % 10 + 1)]
    second = [backoff.delay(n, rng) for rng in [backoff.rng()] for n in range(attempt % 10 + 1)]
    assert first == second
    delay = backoff.delay(attempt, backoff.rng())
    base = min(20.0, 0.5 * 2.0 ** min(attempt, 64))
    assert base * 0.8 <= delay <= base * 1.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 5, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"reset_after": 0},
        {"initial": "0.1"},
        {"maximum": float("inf")},
        {"factor": float("nan")},
        {"seed": -1},
        {"seed": 1.5},
    ],
)
def test_invalid_backoff_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidFlags, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]
