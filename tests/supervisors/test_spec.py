"""Child specs validate every field at construction."""

from __future__ import annotations

from typing import Any

import pytest

from supervisors import BRUTAL, INFINITY, ChildKind, ChildSpec, InvalidChildSpec, Restart
from tests.supervisors._workers import Journal, Worker


def factory() -> Worker:
    return Worker("w", Journal())


def test_defaults_follow_otp() -> None:
    worker = ChildSpec("w", factory)
    assert worker.restart is Restart.PERMANENT
    assert worker.kind is ChildKind.WORKER
    assert worker.shutdown == 5.0
    supervisor = ChildSpec("s", factory, kind=ChildKind.SUPERVISOR)
    assert supervisor.shutdown == INFINITY


def test_strings_are_accepted_for_enums() -> None:
    # Specs often come from configuration, so the enums' string values are accepted.
    spec = ChildSpec("w", factory, restart="transient", shutdown=BRUTAL)  # type: ignore[arg-type]
    assert spec.restart is Restart.TRANSIENT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "non-empty string"),
        ({"id": 7}, "non-empty string"),
        ({"start": "not callable"}, "callable"),
        ({"restart": "sometimes"}, "unknown restart type 'sometimes'"),
        ({"restart": None}, "unknown restart type"),
        ({"kind": "manager"}, "unknown child kind"),
        ({"shutdown": 0}, "shutdown must be positive"),
        ({"shutdown": -1.0}, "shutdown must be positive"),
        ({"shutdown": float("nan")}, "shutdown must be positive"),
        ({"shutdown": "gentle"}, "shutdown must be positive"),
        ({"shutdown": True}, "shutdown must be positive"),
        ({"shutdown": INFINITY}, "only for supervisors"),
        ({"significant": True}, "transient or temporary"),
        ({"start_timeout": 0}, "start_timeout"),
        ({"start_timeout": "5"}, "start_timeout must be positive, finite seconds, got '5'"),
        ({"start_timeout": float("inf")}, "start_timeout must be positive, finite"),
        ({"start_timeout": float("nan")}, "start_timeout must be positive, finite"),
        ({"start_timeout": True}, "start_timeout"),
        ({"shutdown": float("inf")}, "shutdown must be positive"),
        ({"mailbox": {}}, "mailbox must be a MailboxConfig or None, got {}"),
        ({"significant": "yes"}, "significant must be True or False"),
        ({"significant": 1}, "significant must be True or False"),
        ({"name": ["x"]}, "name must be hashable"),
    ],
)
def test_invalid_fields_raise_a_clear_value_error(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"id": "w", "start": factory, **kwargs}
    with pytest.raises(InvalidChildSpec, match=message) as caught:
        ChildSpec(**fields)
    assert isinstance(caught.value, ValueError)
