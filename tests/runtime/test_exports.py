"""Public surfaces: ``__all__`` lists exactly the public names."""

from __future__ import annotations

import importlib
import types

import pytest

MODULES = [
    "runtime.store",
    "runtime.errors",
    "runtime.config",
    "runtime.migrator",
    "runtime.listener",
    "runtime.embedded_pg",
    "runtime.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", None) in (name, *_reexported(name))
    }
    assert set(module.__all__) >= public
    for attr in module.__all__:
        assert hasattr(module, attr)


_STORE_MODULES = ("_store", "_codec", "events", "frames", "leases", "memory", "runs")


def _reexported(name: str) -> tuple[str, ...]:
    if name == "runtime.store":
        extra = ("attempts", "chain")
        return (*(f"runtime.store.{m}" for m in _STORE_MODULES + extra), "runtime.errors")
    return ()


def test_runtime_store_does_not_leak_internals() -> None:
    import runtime.store

    assert "Store" in runtime.store.__all__
    assert not [name for name in runtime.store.__all__ if name.startswith("_")]
