"""The exit reason a supervisor adds: escalation is abnormal, reads as OTP's."""

from __future__ import annotations

import dataclasses

import pytest

from actors import ExitReason
from supervisors import IntensityExceeded


def test_intensity_exceeded_is_an_abnormal_exit_reason_that_reads_as_otp() -> None:
    reason = IntensityExceeded(3, 5.0)
    assert isinstance(reason, ExitReason)
    assert reason.abnormal
    assert str(reason) == "shutdown: intensity"
    assert reason == IntensityExceeded(3, 5.0)
    assert (reason.max_restarts, reason.max_seconds) == (3, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reason.max_restarts = 4  # type: ignore[misc]
