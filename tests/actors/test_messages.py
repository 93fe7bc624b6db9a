"""Exit reasons and kernel messages: OTP's normal/abnormal split, bounded text, values."""

from __future__ import annotations

import dataclasses
from typing import assert_type

import pytest

from actors import (
    IGNORE,
    Crashed,
    ExitReason,
    Ignore,
    Killed,
    LinkedExit,
    Normal,
    Request,
    Shutdown,
)

REASONS: list[ExitReason] = [
    Normal(),
    Shutdown(),
    Shutdown("maintenance"),
    Killed(),
    Crashed(ValueError("bad")),
    LinkedExit("Peer#1", Killed()),
]


@pytest.mark.parametrize(
    ("reason", "abnormal"),
    [
        (Normal(), False),
        (Shutdown(), False),
        (Shutdown("detail"), False),
        (Killed(), True),
        (Crashed(ValueError()), True),
        (LinkedExit("Peer#1", Normal()), True),
    ],
    ids=str,
)
def test_only_normal_and_shutdown_are_normal_exits(reason: ExitReason, abnormal: bool) -> None:
    assert isinstance(reason, ExitReason)
    assert reason.abnormal is abnormal


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        (Normal(), "normal"),
        (Shutdown(), "shutdown"),
        (Shutdown("maintenance"), "shutdown: maintenance"),
        (Killed(), "killed"),
        (Crashed(KeyError("k")), "crashed: KeyError: 'k'"),
        (LinkedExit("Peer#1", Killed()), "linked: Peer#1 exited (killed)"),
    ],
    ids=str,
)
def test_reasons_read_well(reason: ExitReason, text: str) -> None:
    assert str(reason) == text


def test_crash_text_is_bounded() -> None:
    text = str(Crashed(ValueError("x" * 10_000)))
    assert text.startswith("crashed: ValueError: xxx")
    assert text.endswith("…")
    assert len(text) == len("crashed: ValueError: ") + 200


def test_nested_linked_exits_stay_readable() -> None:
    inner = LinkedExit("B#2", Crashed(RuntimeError("root cause")))
    assert str(LinkedExit("A#1", inner)) == (
        "linked: A#1 exited (linked: B#2 exited (crashed: RuntimeError: root cause))"
    )


def test_reasons_compare_by_value_and_hash() -> None:
    error = ValueError("same object")
    assert Shutdown("a") == Shutdown("a")
    assert Shutdown("a") != Shutdown("b")
    assert Normal() == Normal()
    assert Killed() != Normal()  # type: ignore[comparison-overlap]
    assert Crashed(error) == Crashed(error)
    assert Crashed(ValueError("x")) != Crashed(ValueError("x"))  # errors compare by identity
    assert len({Normal(), Normal(), Shutdown(), Shutdown("x"), Killed()}) == 4


@pytest.mark.parametrize(
    "value",
    REASONS,
    ids=lambda value: type(value).__name__,
)
def test_reasons_and_messages_are_frozen(value: object) -> None:
    before = repr(value)
    for field in dataclasses.fields(value):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field.name, None)
    # No new attributes either. (For names that are not fields, CPython 3.11's frozen
    # __setattr__ calls super() with the class that slots=True replaced: TypeError.)
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        value.extra = None  # type: ignore[attr-defined]
    assert repr(value) == before


def test_ignore_is_one_value_that_reads_as_itself() -> None:
    assert isinstance(IGNORE, Ignore)
    assert repr(IGNORE) == "IGNORE"
    with pytest.raises(AttributeError):
        IGNORE.extra = 1  # type: ignore[attr-defined]


def test_the_kernel_defines_no_application_messages() -> None:
    import actors

    # Cancel and LeaseLost belong to the node's run actor, not to the kernel.
    assert not {"Cancel", "LeaseLost"} & set(actors.__all__)


def test_request_types_the_reply() -> None:
    class GetName(Request[str]):
        pass

    request = GetName()
    assert isinstance(request, Request)
    assert_type(request, GetName)
