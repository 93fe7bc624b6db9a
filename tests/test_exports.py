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

PACKAGES = ("actors", "actors.hosting", "supervisors", "runtime", "transport")


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


@pytest.mark.parametrize(
    "name", ["actors.errors", "actors.testing", "supervisors.errors", "supervisors.events"]
)
def test_public_submodules_declare_a_sorted_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert all(hasattr(module, export) for export in exported)
    defined_here = [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (
            # Classes and functions defined here, and the type aliases that name them.
            (
                isinstance(value, type | types.FunctionType)
                and value.__module__ in {name, name.rpartition(".")[0]}
            )
            or (isinstance(value, types.UnionType | types.GenericAlias) and attr[0].isupper())
        )
    ]
    assert sorted(defined_here) == exported


def test_the_application_api_leaves_hosting_to_actors_hosting() -> None:
    """Issue 7: ``actors`` exports what application code uses; kernel extensions' API is
    ``actors.hosting``; names the kernel never acts on are not exported at all."""
    import actors
    import actors.hosting

    hosting = {"ActorHost", "Incarnation", "Mailbox", "Process", "new_label", "process_of"}
    assert hosting <= set(actors.hosting.__all__)
    assert not hosting & set(actors.__all__)
    assert not {"Cancel", "LeaseLost", "IntensityExceeded", "run_incarnation"} & set(actors.__all__)


def test_importing_the_kernel_does_not_import_trio() -> None:
    """Issue 7: trio is imported only when it is the running backend."""
    import subprocess
    import sys

    code = (
        "import sys, actors, actors.hosting, supervisors\n"
        "import anyio\n"
        "from actors import spawn\n"
        "async def main():\n"
        "    async with anyio.create_task_group() as tg:\n"
        "        ref = await spawn(tg, actors.Actor())\n"
        "        await ref.stop()\n"
        "anyio.run(main)\n"
        "assert 'trio' not in sys.modules, sorted(m for m in sys.modules if 'trio' in m)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_scan_sees_an_accidental_export() -> None:
    package = types.ModuleType("demo")
    package.Public = type("Public", (), {})  # type: ignore[attr-defined]
    package.helper = lambda: None  # type: ignore[attr-defined]
    package._private = 1  # type: ignore[attr-defined]
    package.sub = types.ModuleType("demo.sub")  # type: ignore[attr-defined]
    package.annotations = __future__.annotations  # type: ignore[attr-defined]
    assert sorted(public_names(package)) == ["Public", "helper"]
