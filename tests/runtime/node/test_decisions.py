"""The node's pure decisions: admission and the janitor's "what to recover"."""

from __future__ import annotations

import itertools
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.node._admission import Admission, AdmissionState, admit, free_slots
from runtime.node._recovery import GiveUp, Resume, Skip, plan_recovery
from runtime.store import ClaimedRun, LeaseState

# -- admission --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "starting", "limit", "draining"),
    list(itertools.product(range(5), range(5), range(1, 5), (False, True))),
)
def test_admission_admits_exactly_while_under_the_bound_and_not_draining(
    active: int, starting: int, limit: int, draining: bool
) -> None:
    state = AdmissionState(active, starting, limit, draining)
    verdict = admit(state)
    if draining:
        assert verdict == "draining"
        assert free_slots(state) == 0
    elif active + starting < limit:
        assert verdict is None
        assert free_slots(state) == limit - active - starting
    else:
        assert verdict == "max_active_runs"
        assert free_slots(state) == 0


def test_the_counter_never_overshoots_and_frees_slots() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    admission = Admission(2)
    assert admission.reserve(a) is None
    assert admission.reserve(a) is None  # the same run's slot, not a second one
    assert admission.reserve(b) is None
    assert admission.reserve(c) == "max_active_runs"  # two starts in flight hold the bound
    admission.started(a)
    admission.abandoned(b)
    admission.abandoned(b)  # idempotent
    assert (admission.active, admission.starting) == (1, 0)
    assert admission.hosts(a)
    assert not admission.hosts(b)
    assert admission.reserve(c) is None
    admission.started(c)
    assert admission.reserve(b) == "max_active_runs"
    admission.exited(a)
    admission.exited(a)  # a second exit notice changes nothing
    assert admission.active == 1
    admission.close()
    assert admission.reserve(b) == "draining"
    assert admission.refused == 3


def test_steps_reported_out_of_order_still_count_right() -> None:
    run = uuid.uuid4()
    admission = Admission(1)
    assert admission.reserve(run) is None
    admission.started(run)
    admission.abandoned(run)  # a late "start failed" for a start that did happen
    assert admission.active == 1
    admission.exited(run)
    admission.started(run)  # a stale start report after the exit: hosted again...
    admission.exited(run)  # ...until its exit, which always follows
    assert admission.state() == AdmissionState(0, 0, 1, draining=False)


# -- recovery ---------------------------------------------------------------------------

STATES = list(LeaseState)


@pytest.mark.parametrize(
    ("lease", "losses", "cancel", "hosted", "budget", "slots"),
    list(itertools.product(STATES, range(5), (False, True), (False, True), range(4), range(2))),
)
def test_every_single_candidate_case(
    lease: LeaseState, losses: int, cancel: bool, hosted: bool, budget: int, slots: int
) -> None:
    run_id = uuid.uuid4()
    [decision] = plan_recovery(
        [ClaimedRun(run_id, lease, losses, cancel)],
        budget=budget,
        free_slots=slots,
        hosted={run_id} if hosted else set(),
    )
    lost = lease is LeaseState.EXPIRED
    after = losses + lost
    if hosted:
        assert decision == Skip(run_id, "hosted here")
    elif lost and after > budget:
        event = "run.canceled" if cancel else "run.failed"
        assert decision == GiveUp(run_id, event, "executor_lost_budget", after)
    elif slots == 0:
        assert decision == Skip(run_id, "no free run slot")
    else:
        assert decision == Resume(run_id, lost=lost, losses=after)


candidates = st.lists(
    st.builds(
        ClaimedRun,
        run_id=st.uuids(),
        lease=st.sampled_from(STATES),
        executor_losses=st.integers(0, 6),
        cancel_requested=st.booleans(),
    ),
    max_size=12,
    unique_by=lambda c: c.run_id,
)


@given(
    runs=candidates,
    budget=st.integers(0, 5),
    slots=st.integers(0, 8),
    hosted_mask=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_a_batch_takes_the_oldest_resumable_runs_up_to_the_free_slots(
    runs: list[ClaimedRun], budget: int, slots: int, hosted_mask: list[bool]
) -> None:
    hosted = {run.run_id for run, mask in zip(runs, hosted_mask, strict=False) if mask}
    decisions = plan_recovery(runs, budget=budget, free_slots=slots, hosted=hosted)
    assert [d.run_id for d in decisions] == [r.run_id for r in runs]
    resumed = [d for d in decisions if isinstance(d, Resume)]
    assert len(resumed) <= slots
    # A run skipped for want of a slot comes only after the slots were all taken, and
    # giving up never takes a slot.
    seen_resumes = 0
    for decision in decisions:
        if isinstance(decision, Resume):
            seen_resumes += 1
        if isinstance(decision, Skip) and decision.why == "no free run slot":
            assert seen_resumes == slots
    assert all(d.run_id not in hosted for d in resumed)
    for run, decision in zip(runs, decisions, strict=True):
        if isinstance(decision, GiveUp):
            assert run.lease is LeaseState.EXPIRED
            assert decision.losses == run.executor_losses + 1 > budget
