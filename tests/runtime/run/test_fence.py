"""The egress fence: closed until confirmed, closed for good, closed by its deadline."""

from __future__ import annotations

import uuid

import anyio
import pytest

from runtime.run import EgressFence, EgressFenced, FenceReason

pytestmark = pytest.mark.anyio

RUN = uuid.UUID(int=3)


async def test_the_fence_is_closed_until_a_lease_is_confirmed() -> None:
    fence = EgressFence(RUN)
    with pytest.raises(EgressFenced, match="lease_not_confirmed"):
        fence.check()
    fence.extend(anyio.current_time() + 60)
    assert fence.is_open
    fence.check()
    assert fence.refused == 1


async def test_the_first_reason_wins_and_the_fence_never_reopens() -> None:
    fence = EgressFence(RUN)
    fence.extend(anyio.current_time() + 60)
    assert fence.close(FenceReason.CANCEL_REQUESTED)
    assert not fence.close(FenceReason.LEASE_LOST)
    fence.extend(anyio.current_time() + 120)
    with pytest.raises(EgressFenced) as raised:
        fence.check()
    assert (raised.value.run_id, raised.value.reason) == (RUN, "cancel_requested")
    assert fence.reason is FenceReason.CANCEL_REQUESTED


async def test_a_passed_deadline_closes_the_fence_at_the_next_check() -> None:
    fence = EgressFence(RUN)
    deadline = anyio.current_time()
    fence.extend(deadline)
    fence.extend(deadline - 5)  # never backwards
    assert fence.reason is None  # nobody looked yet
    with pytest.raises(EgressFenced, match="lease_overdue"):
        fence.check()
    assert fence.reason is FenceReason.LEASE_OVERDUE
