"""Public surfaces: a sorted ``__all__`` lists exactly the public names (STYLE §2.2).

``runtime.store`` is a package: like the other packages (``tests/test_exports.py``), its
``__all__`` must equal every non-underscore name it binds, submodules aside. The plain
modules import helpers they do not export, so for them the public names are the ones the
module itself defines at top level (classes, functions, constants), read from its source.
"""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

from tests.test_exports import public_names

MODULES = [
    "runtime.config",
    "runtime.cli",
    "runtime.store.config",
    "runtime.store.dsn",
    "runtime.store.embedded",
    "runtime.store.errors",
    "runtime.store.listener",
    "runtime.store.migrator",
]


def defined_public_names(source: str) -> list[str]:
    """Non-underscore names bound by the top-level statements of ``source``."""
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in names if not name.startswith("_")]


def test_runtime_store_all_is_sorted_and_exactly_its_public_names() -> None:
    package = importlib.import_module("runtime.store")
    exported = list(package.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    assert sorted(public_names(package)) == exported


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_exactly_the_defined_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    assert sorted(defined_public_names(inspect.getsource(module))) == exported
    for attr in exported:
        assert hasattr(module, attr)


def test_the_scan_sees_definitions_and_ignores_imports_and_private_names() -> None:
    source = (
        "import os\nfrom x import Y\nA = 1\n_b = 2\nC: int = 3\n"
        "def f(): pass\nclass K: pass\nasync def g(): pass\n"
    )
    assert sorted(defined_public_names(source)) == ["A", "C", "K", "f", "g"]


def test_runtime_store_does_not_leak_internals() -> None:
    import runtime.store

    assert "Store" in runtime.store.__all__
    assert not [name for name in runtime.store.__all__ if name.startswith("_")]


def test_runtime_store_classes_report_the_public_path() -> None:
    """Tracebacks read ``runtime.store.StaleEpoch``, not a private module's path."""
    import runtime.store

    misplaced = [
        f"{name}: {value.__module__}"
        for name in runtime.store.__all__
        if isinstance(value := getattr(runtime.store, name), type)
        and value.__module__ != "runtime.store"
    ]
    assert misplaced == []
