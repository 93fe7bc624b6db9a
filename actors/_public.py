"""Public names report their public module."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["fixup_module_metadata"]


def fixup_module_metadata(module: str, namespace: Mapping[str, object]) -> None:
    """Make every class in ``namespace["__all__"]`` that was defined in a submodule of
    ``module``'s package report ``module`` as its ``__module__``, so reprs and
    tracebacks read ``actors.MailboxFull`` rather than ``actors.errors.MailboxFull`` or
    ``actors._mailbox.Lane`` (trio's ``fixup_module_metadata`` does the same)."""
    submodules = module.partition(".")[0] + "."
    names = namespace["__all__"]
    if not isinstance(names, list | tuple):
        raise TypeError(f"{module}.__all__ must be a list of names")
    for name in names:
        value = namespace[name]
        if (
            isinstance(value, type)
            and value.__module__ != module
            and value.__module__.startswith(submodules)
        ):
            value.__module__ = module
