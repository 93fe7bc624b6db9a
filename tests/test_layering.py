"""The kernel stays portable: actors/ and supervisors/ never import the asyncio layers.

``runtime/`` and ``transport/`` need asyncio (psycopg, aiohttp); the kernel runs on
asyncio and trio, so it must not import them or their asyncio-only dependencies, and the
actor kernel must not import the supervision layer built on top of it. Every import is
checked, including ones inside functions and ``TYPE_CHECKING`` blocks, with relative
imports resolved against the importing module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Top-level modules only the asyncio layers (runtime/, transport/) may import.
ASYNCIO_ONLY = frozenset({"runtime", "transport", "psycopg", "psycopg_pool", "aiohttp", "pgserver"})

FORBIDDEN: dict[str, frozenset[str]] = {
    "actors": ASYNCIO_ONLY | {"supervisors"},
    "supervisors": ASYNCIO_ONLY,
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, as absolute dotted names."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
                if not node.module:  # from .. import runtime: the names are modules
                    found.update(".".join([*base, alias.name]) for alias in node.names)
                if target:
                    found.add(target)
            elif node.module:
                found.add(node.module)
    return found


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        module = module_name(path)
        imports = imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")
        for name in sorted(imports):
            if name.partition(".")[0] in FORBIDDEN[layer]:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_kernel_layers_never_import_the_asyncio_layers(layer: str) -> None:
    modules = list((ROOT / layer).rglob("*.py"))
    assert modules, f"{layer}/ has no modules to check"
    assert violations(layer) == []


def test_the_actor_kernel_is_really_scanned() -> None:
    imports = imported_modules((ROOT / "actors" / "_actor.py").read_text(), "actors._actor")
    assert {"anyio", "actors._mailbox", "actors.errors"} <= imports


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import runtime.store", "actors._x", "runtime.store"),
        ("from transport import client", "actors._x", "transport"),
        ("import aiohttp as http", "supervisors._x", "aiohttp"),
        ("from psycopg_pool import AsyncConnectionPool", "actors._x", "psycopg_pool"),
        ("from .. import runtime", "actors._x", "runtime"),
        ("from ..supervisors import Supervisor", "actors._x", "supervisors"),
        ("def f():\n    import psycopg\n", "actors._x", "psycopg"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runtime import Node\n",
            "actors._x",
            "runtime",
        ),
    ],
)
def test_scan_catches_forbidden_imports(source: str, module: str, expected: str) -> None:
    imports = imported_modules(source, module)
    assert expected in imports, imports
    layer = module.partition(".")[0]
    assert any(name.partition(".")[0] in FORBIDDEN[layer] for name in imports)


def test_relative_imports_resolve_within_the_package() -> None:
    assert imported_modules("from ._mailbox import Mailbox", "actors._ref") == {"actors._mailbox"}
    assert imported_modules("from . import errors", "actors", is_package=True) == {
        "actors",
        "actors.errors",
    }
    assert "supervisors" not in {
        name.partition(".")[0]
        for name in imported_modules("from .errors import ActorError", "actors._x")
    }


def private_kernel_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Underscore names ``source`` takes from the actor kernel: private modules
    (``actors._actor``) or private names (``from actors import _EMPTY``)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                alias.name
                for alias in node.names
                if alias.name.partition(".")[0] == "actors"
                and any(part.startswith("_") for part in alias.name.split("."))
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.partition(".")[0] != "actors":
                continue
            if any(part.startswith("_") for part in target.split(".")):
                found.append(target)
            found += [
                f"{target}.{alias.name}" for alias in node.names if alias.name.startswith("_")
            ]
    return found


def test_supervisors_use_only_the_public_kernel_api() -> None:
    """STYLE §1: everything outside the engine is built on its public API, so
    supervisors/ never imports an underscore module or name from actors/."""
    found = []
    for path in sorted((ROOT / "supervisors").rglob("*.py")):
        module = module_name(path)
        source = path.read_text()
        for name in private_kernel_imports(source, module, is_package=path.name == "__init__.py"):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from actors._actor import run_incarnation", ["actors._actor"]),
        ("from actors import _EMPTY", ["actors._EMPTY"]),
        ("import actors._mailbox", ["actors._mailbox"]),
        ("from actors.errors import ActorError", []),
        ("from actors import Incarnation, run_incarnation", []),
        ("from supervisors._spec import ChildSpec", []),
        ("def f():\n    from actors._links import link\n", ["actors._links"]),
    ],
)
def test_private_kernel_imports_are_caught(source: str, expected: list[str]) -> None:
    assert private_kernel_imports(source, "supervisors._x") == expected
