"""The data layer stands on its own: ``runtime/store/`` never imports the node above it.

``runtime/`` holds the node and the command line; the store under it is what they are
built on. A store module that imported ``runtime.config``, ``runtime.cli`` or any other
module of ``runtime/`` outside ``runtime.store`` would make the data layer depend on its
user. Every import is checked, including ones inside functions and ``TYPE_CHECKING``
blocks, with relative imports resolved (the scanner is the kernel layering test's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.test_layering import ROOT, imported_modules, module_name

if TYPE_CHECKING:
    from pathlib import Path

STORE = ROOT / "runtime" / "store"


def _outside_the_store(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "runtime" and parts[:2] != ["runtime", "store"]


def store_violations(root: Path = STORE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path)
        source = path.read_text()
        for name in sorted(imported_modules(source, module, is_package=path.name == "__init__.py")):
            if _outside_the_store(name):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_store_imports_nothing_from_the_node_above_it() -> None:
    assert list(STORE.rglob("*.py")), "runtime/store/ has no modules to check"
    assert store_violations() == []


def test_the_kernel_is_the_only_warden_package_the_store_uses() -> None:
    used = set()
    for path in STORE.rglob("*.py"):
        module = module_name(path)
        used |= {
            name.partition(".")[0]
            for name in imported_modules(
                path.read_text(), module, is_package=path.name == "__init__.py"
            )
        }
    assert used & {"actors", "supervisors", "transport", "runtime"} <= {"actors", "runtime"}


@pytest.mark.parametrize(
    ("source", "module", "outside"),
    [
        ("from runtime.config import NodeConfig", "runtime.store._store", True),
        ("from runtime import cli", "runtime.store.x", True),
        ("from ..config import NodeConfig", "runtime.store.x", True),
        ("from .. import node", "runtime.store.x", True),
        ("from runtime.store.errors import StoreError", "runtime.store.x", False),
        ("from . import _db", "runtime.store.x", False),
        ("import runtime.store.config", "runtime.store.x", False),
    ],
)
def test_the_scan_tells_the_store_from_the_node(source: str, module: str, outside: bool) -> None:
    imports = imported_modules(source, module)
    assert any(_outside_the_store(name) for name in imports) is outside, imports
