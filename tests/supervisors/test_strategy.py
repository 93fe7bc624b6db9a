"""The restart strategies are pure functions: property-test them against OTP's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Crashed, Killed, LinkedExit, Normal, Shutdown
from supervisors import ChildView, Restart, RestartPlan, Strategy, plan_restart, should_restart

restarts = st.sampled_from(list(Restart))


@st.composite
def children_and_failure(draw: st.DrawFn) -> tuple[list[ChildView], str]:
    count = draw(st.integers(min_value=1, max_value=8))
    views = [ChildView(f"c{index}", draw(restarts), draw(st.booleans())) for index in range(count)]
    failed_index = draw(st.integers(min_value=0, max_value=count - 1))
    failed = views[failed_index]
    views[failed_index] = ChildView(failed.id, failed.restart, running=False)
    return views, failed.id


def test_one_for_one_restarts_only_the_failed_child() -> None:
    views = [ChildView(name, Restart.PERMANENT, True) for name in "abc"]
    assert plan_restart(Strategy.ONE_FOR_ONE, views, "b") == RestartPlan((), (), ("b",))


def test_rest_for_one_example() -> None:
    views = [
        ChildView("a", Restart.PERMANENT, True),
        ChildView("b", Restart.PERMANENT, False),
        ChildView("c", Restart.TEMPORARY, True),
        ChildView("d", Restart.TRANSIENT, True),
    ]
    plan = plan_restart(Strategy.REST_FOR_ONE, views, "b")
    assert plan == RestartPlan(stop=("d", "c"), remove=("c",), start=("b", "d"))


@given(children_and_failure(), st.sampled_from(list(Strategy)))
def test_plans_follow_otp(case: tuple[list[ChildView], str], strategy: Strategy) -> None:
    views, failed = case
    ids = [view.id for view in views]
    plan = plan_restart(strategy, views, failed)
    position = ids.index(failed)
    if strategy is Strategy.ONE_FOR_ONE:
        affected = [failed]
    elif strategy is Strategy.ONE_FOR_ALL:
        affected = ids
    else:
        affected = ids[position:]
    by_id = {view.id: view for view in views}
    # The failed child is always started again, and only affected children are touched.
    assert failed in plan.start
    assert set(plan.stop) | set(plan.start) | set(plan.remove) <= set(affected)
    # Stops go in reverse start order and only hit running siblings.
    assert list(plan.stop) == sorted(plan.stop, key=ids.index, reverse=True)
    assert all(by_id[child].running and child != failed for child in plan.stop)
    # Starts go in start order; temporary siblings are dropped, never restarted.
    assert list(plan.start) == sorted(plan.start, key=ids.index)
    for child in affected:
        if child == failed:
            continue
        if by_id[child].restart is Restart.TEMPORARY:
            assert child in plan.remove
            assert child not in plan.start
        else:
            assert child in plan.start


def test_plan_for_an_unknown_child_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown child"):
        plan_restart(Strategy.ONE_FOR_ONE, [ChildView("a", Restart.PERMANENT, True)], "b")


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        (Restart.PERMANENT, Normal(), True),
        (Restart.PERMANENT, Shutdown(), True),
        (Restart.PERMANENT, Crashed(RuntimeError()), True),
        (Restart.TRANSIENT, Normal(), False),
        (Restart.TRANSIENT, Shutdown("bye"), False),
        (Restart.TRANSIENT, Crashed(RuntimeError()), True),
        (Restart.TRANSIENT, Killed(), True),
        (Restart.TRANSIENT, LinkedExit("x", Killed()), True),
        (Restart.TEMPORARY, Crashed(RuntimeError()), False),
        (Restart.TEMPORARY, Normal(), False),
    ],
)
def test_should_restart_follows_the_restart_type(
    restart: Restart, reason: Normal | Shutdown | Crashed | Killed | LinkedExit, expected: bool
) -> None:
    assert should_restart(restart, reason) is expected
