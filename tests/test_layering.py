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
    source = (ROOT / "actors" / "_incarnation.py").read_text()
    imports = imported_modules(source, "actors._incarnation")
    assert {"anyio", "actors._mailbox", "actors.errors"} <= imports
    assert private_crossings(source) == []
    # The scan sees the module's own private names at work, so it is not vacuous.
    assert {"_scope", "_mark_started"} <= owned_private_names(ast.parse(source))


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
        ("from actors.hosting import Incarnation, ActorHost", []),
        ("from supervisors._spec import ChildSpec", []),
        ("def f():\n    from actors._links import link\n", ["actors._links"]),
    ],
)
def test_private_kernel_imports_are_caught(source: str, expected: list[str]) -> None:
    assert private_kernel_imports(source, "supervisors._x") == expected


# -- no module reaches into another's private names or slots ---------------------------

#: The kernel: every module here may touch only its own private names.
KERNEL = ("actors", "supervisors")


def owned_private_names(tree: ast.Module) -> set[str]:
    """Underscore names a module defines: its module-level names, and its classes'
    slots, methods, class attributes and the ``self._x`` attributes they assign."""
    owned: set[str] = set()

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if private(node.name):
                owned.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if private(node.id):
                owned.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"self", "cls"}
            and private(node.attr)
        ):
            owned.add(node.attr)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            slots = any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets)
            if slots and node.value is not None:
                owned.update(
                    element.value
                    for element in ast.walk(node.value)
                    if isinstance(element, ast.Constant)
                    and isinstance(element.value, str)
                    and private(element.value)
                )
    return owned


def private_crossings(source: str) -> list[str]:
    """Accesses of another module's private names: ``x._name`` (read or written) and
    ``getattr(x, "_name")`` where ``_name`` is not one this module defines. ``self``
    and ``cls`` reach their own class; dunder names are Python's protocol."""
    tree = ast.parse(source)
    owned = owned_private_names(tree)
    found = []

    def check(name: str, line: int) -> None:
        dunder = name.startswith("__") and name.endswith("__")
        if name.startswith("_") and not dunder and name not in owned:
            found.append(f"line {line}: {name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}:
                continue
            check(node.attr, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            check(node.args[1].value, node.lineno)
    return found


def test_no_kernel_module_reaches_into_another_modules_private_names() -> None:
    """STYLE §5: no overriding another module's private hooks, no reaching into another
    type's private slots. A hook another module needs is public and documented."""
    found = []
    for layer in KERNEL:
        for path in sorted((ROOT / layer).rglob("*.py")):
            found += [
                f"{path.relative_to(ROOT)} {crossing}"
                for crossing in private_crossings(path.read_text())
            ]
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(box):\n    return box._control\n", ["line 2: _control"]),
        ("def f(ref):\n    ref._mailbox = None\n", ["line 2: _mailbox"]),
        ("def f(task):\n    return getattr(task, '_fut_waiter', None)\n", ["line 2: _fut_waiter"]),
        ("import trio\ntrio._core.current_task()\n", ["line 2: _core"]),
        # A module's own private names are its business, on any instance of its classes.
        (
            "class P:\n    __slots__ = ('_links',)\n    def link(self, other):\n"
            "        other._links = self._links\n",
            [],
        ),
        ("class A:\n    def _hook(self):\n        pass\n\ndef f(a):\n    a._hook()\n", []),
        ("_CACHE = {}\ndef f(m):\n    return m._CACHE\n", []),
        ("def f(x):\n    return x.__class__, x.__dict__\n", []),
    ],
)
def test_the_crossing_scan_sees_attribute_access(source: str, expected: list[str]) -> None:
    assert private_crossings(source) == expected
