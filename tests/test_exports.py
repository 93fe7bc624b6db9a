"""Each package declares its public surface once, in a sorted ``__all__`` (STYLE §2.2).

Like httpx's ``tests/test_exported_members.py``: ``__all__`` must list exactly the public
names a package defines or re-exports, so nothing is exported by accident and nothing
public is forgotten; public classes report the package as their module, so tracebacks and
reprs read ``actors.MailboxFull``, not ``actors.errors.MailboxFull``.
"""

from __future__ import annotations
import __future__

import importlib
import types

import pytest

PACKAGES = ("actors", "supervisors", "runtime", "runtime.node", "transport")


def exporting_packages() -> list[str]:
    """The packages that already define a non-empty ``__all__``."""
    return [name for name in PACKAGES if getattr(importlib.import_module(name), "__all__", [])]


def public_names(package: types.ModuleType) -> list[str]:
    """Names the package binds that do not start with ``_``, minus its submodules
    (bound as attributes by the import system) and ``from __future__`` features."""
    return [
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not (
            isinstance(value, types.ModuleType) and value.__name__ == f"{package.__name__}.{name}"
        )
        and not isinstance(value, __future__._Feature)
    ]


def test_the_kernel_exports_something() -> None:
    assert "actors" in exporting_packages()


@pytest.mark.parametrize("name", exporting_packages())
def test_all_is_sorted_and_complete(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    assert sorted(public_names(package)) == exported


@pytest.mark.parametrize("name", exporting_packages())
def test_public_classes_live_in_the_package(name: str) -> None:
    package = importlib.import_module(name)
    misplaced = [
        f"{export}: {value.__module__}"
        for export in package.__all__
        if isinstance(value := getattr(package, export), type) and value.__module__ != name
    ]
    assert misplaced == []


@pytest.mark.parametrize("name", ["actors.errors", "actors.testing"])
def test_public_submodules_declare_a_sorted_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert all(hasattr(module, export) for export in exported)
    defined_here = [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and value.__module__ in {name, name.rpartition(".")[0]}
    ]
    assert sorted(defined_here) == exported


def test_the_scan_sees_an_accidental_export() -> None:
    package = types.ModuleType("demo")
    package.Public = type("Public", (), {})  # type: ignore[attr-defined]
    package.helper = lambda: None  # type: ignore[attr-defined]
    package._private = 1  # type: ignore[attr-defined]
    package.sub = types.ModuleType("demo.sub")  # type: ignore[attr-defined]
    package.annotations = __future__.annotations  # type: ignore[attr-defined]
    assert sorted(public_names(package)) == ["Public", "helper"]
