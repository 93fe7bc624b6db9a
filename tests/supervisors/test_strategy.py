"""The restart strategies are pure functions: property-test them against OTP's rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
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


def otp_restart(
    strategy: Strategy, children: list[ChildView], failed: str
) -> tuple[list[str], list[str], list[str]]:
    """What OTP 25's ``supervisor:restart/3`` does, transcribed from its list operations
    (``supervisor.erl``): which children it terminates (in order), which it removes and
    which it starts (in order). Children are kept most recently started first, as OTP
    keeps its ``Ids``; only a child with a pid is really terminated (``do_terminate``
    of a child without one does nothing); temporary children among those terminated
    are removed (``terminate_children``); ``start_children`` starts every child left."""
    ids = [child.id for child in reversed(children)]  # OTP's order: newest first
    by_id = {child.id: child for child in children}
    if strategy is Strategy.ONE_FOR_ONE:
        return [], [], [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        group = ids  # del_child(Id) keeps the failed child, without a pid
    else:
        position = ids.index(failed)  # split_child: the failed child and those after it
        group = ids[: position + 1]
    terminated, removed, kept = [], [], []
    for child_id in group:  # children_map walks the Ids in their order: newest first
        child = by_id[child_id]
        has_pid = child.running and child_id != failed
        if has_pid:
            terminated.append(child_id)
        if child.restart is Restart.TEMPORARY and child_id != failed:
            removed.append(child_id)
        else:
            kept.append(child_id)
    started = list(reversed(kept))  # children_map returns the Ids reversed: start order
    return terminated, sorted(removed, key=ids.index, reverse=True), started


@st.composite
def restartable_failures(draw: st.DrawFn) -> tuple[list[ChildView], str]:
    """Random children of one supervisor and a failed one that is to be restarted
    (``plan_restart`` is only asked about children whose restart type allows it)."""
    views, failed = draw(children_and_failure())
    failed_view = next(view for view in views if view.id == failed)
    if failed_view.restart is Restart.TEMPORARY:
        index = views.index(failed_view)
        views[index] = ChildView(
            failed, draw(st.sampled_from([Restart.PERMANENT, Restart.TRANSIENT])), False
        )
    return views, failed


@settings(max_examples=500)
@given(restartable_failures(), st.sampled_from(list(Strategy)))
def test_the_restart_set_is_exactly_otps(
    case: tuple[list[ChildView], str], strategy: Strategy
) -> None:
    views, failed = case
    plan = plan_restart(strategy, views, failed)
    terminated, removed, started = otp_restart(strategy, views, failed)
    assert list(plan.stop) == terminated
    assert list(plan.remove) == removed
    assert list(plan.start) == started


def test_the_reference_model_reads_like_otps_documentation() -> None:
    # rest_for_one over [a, b(failed), tmp(temporary, running), d(stopped earlier)]:
    # OTP terminates tmp, removes it, and starts b and d again (d too: start_children
    # starts every child it is given, running before or not).
    views = [
        ChildView("a", Restart.PERMANENT, True),
        ChildView("b", Restart.PERMANENT, False),
        ChildView("tmp", Restart.TEMPORARY, True),
        ChildView("d", Restart.TRANSIENT, False),
    ]
    assert otp_restart(Strategy.REST_FOR_ONE, views, "b") == (["tmp"], ["tmp"], ["b", "d"])
    assert plan_restart(Strategy.REST_FOR_ONE, views, "b") == RestartPlan(
        stop=("tmp",), remove=("tmp",), start=("b", "d")
    )
