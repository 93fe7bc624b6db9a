"""HandlerRegistry: by run type, from entry points and from ``module:attr``."""

from __future__ import annotations

import pytest

from runtime.handlers import chat, echo
from runtime.run import HandlerLoadError, HandlerRegistry, UnknownRunType
from tests.runtime.run import sample_handlers

MODULE = "tests.runtime.run.sample_handlers"


def test_the_shipped_handlers_come_from_the_entry_points() -> None:
    registry = HandlerRegistry.from_entry_points()
    assert registry.run_types() == ("chat", "echo")
    assert registry.get("chat") is chat
    assert registry.get("echo") is echo


def test_an_unknown_run_type_lists_the_registered_ones() -> None:
    registry = HandlerRegistry({"chat": chat, "echo": echo})
    with pytest.raises(UnknownRunType) as raised:
        registry.get("nope")
    assert raised.value.run_type == "nope"
    assert raised.value.registered == ("chat", "echo")
    assert str(raised.value) == "unknown run type 'nope'; registered run types: chat, echo"
    with pytest.raises(UnknownRunType, match="registered run types: none"):
        HandlerRegistry().get("chat")


def test_register_refuses_a_second_handler_unless_replacing() -> None:
    registry = HandlerRegistry({"chat": chat})
    registry.register("chat", chat)  # the same handler again: a no-op
    with pytest.raises(ValueError, match="already has a handler"):
        registry.register("chat", echo)
    registry.register("chat", echo, replace=True)
    assert registry.get("chat") is echo


@pytest.mark.parametrize("bad", ["", " x", ".x", "a b", "x" * 201, 3])
def test_register_refuses_a_bad_run_type(bad: object) -> None:
    with pytest.raises(ValueError, match="run type must be"):
        HandlerRegistry().register(bad, chat)  # type: ignore[arg-type]


def test_register_refuses_a_handler_that_is_not_async() -> None:
    with pytest.raises(TypeError, match="must be an async function"):
        HandlerRegistry().register("x", sample_handlers.not_async)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (f"{MODULE}:summarize", {"summarize": sample_handlers.summarize}),
        (f"custom={MODULE}:summarize", {"custom": sample_handlers.summarize}),
        (f"{MODULE}:review", {"code-review": sample_handlers.review}),
        (f"{MODULE}:agents.triage", {"triage": sample_handlers.agents.triage}),
        (f"{MODULE}:BY_TYPE", sample_handlers.BY_TYPE),
    ],
)
def test_load_registers_what_module_attr_names(spec: str, expected: dict[str, object]) -> None:
    registry = HandlerRegistry()
    assert registry.load(spec) == tuple(sorted(expected))
    for run_type, handler in expected.items():
        assert registry.get(run_type) == handler


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no-colon", "expected module:attr"),
        ("a:b:c", "expected module:attr"),
        ("no_such_module_xyz:handler", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        (f"{MODULE}:missing", f"'{MODULE}' has no attribute 'missing'"),
        (f"{MODULE}:NOT_A_HANDLER", "must be an async function"),
        (f"{MODULE}:not_async", "must be an async function"),
        (f"x={MODULE}:BY_TYPE", "a run type can only name a single handler"),
    ],
)
def test_load_errors_say_what_is_wrong_and_register_nothing(spec: str, reason: str) -> None:
    registry = HandlerRegistry({"chat": chat})
    with pytest.raises(HandlerLoadError) as raised:
        registry.load(spec)
    assert raised.value.spec == spec
    assert reason in raised.value.reason
    assert registry.run_types() == ("chat",)


def test_load_refuses_to_shadow_a_registered_run_type() -> None:
    registry = HandlerRegistry({"summarize": chat})
    with pytest.raises(HandlerLoadError, match="already has a handler"):
        registry.load(f"{MODULE}:summarize")
    assert registry.load(f"{MODULE}:summarize", replace=True) == ("summarize",)
    assert registry.get("summarize") is sample_handlers.summarize


def test_a_missing_entry_point_group_gives_an_empty_registry() -> None:
    assert len(HandlerRegistry.from_entry_points("warden.no_such_group")) == 0
