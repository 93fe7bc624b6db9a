"""HandlerRegistry: which handler runs which run type.

A handler is ``async def handler(ctx: RunContext) -> JSON``. Handlers are registered by
run type, in code, through the ``warden.handlers`` entry-point group of installed
distributions, or by ``module:attr`` (``warden node --handlers myapp.agents:summarize``)::

    registry = HandlerRegistry.from_entry_points()     # echo, chat and any installed ones
    registry.load("myapp.agents:summarize")            # run type "summarize"
    registry.load("review=myapp.agents:review_v2")     # run type "review"
    registry.register("triage", triage)

Loading imports modules and reads package metadata: do it while the node starts, not
from inside a running handler.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias

from runtime.run.errors import HandlerLoadError, UnknownRunType

if TYPE_CHECKING:
    from collections.abc import Iterator

    from runtime.run.context import RunContext

__all__ = ["ENTRY_POINT_GROUP", "Handler", "HandlerRegistry", "is_async_callable"]

Handler: TypeAlias = Callable[["RunContext"], Awaitable[object]]
"""``async def handler(ctx: RunContext) -> JSON``: runs one run, returns its result."""

ENTRY_POINT_GROUP: Final = "warden.handlers"
"""Entry-point group scanned by :meth:`HandlerRegistry.from_entry_points`: each entry's
name is a run type, its value the handler (``echo = "runtime.handlers.echo:echo"``)."""

_RUN_TYPE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}")
_SPEC: Final = re.compile(
    r"(?:(?P<run_type>[^=\s]+)=)?(?P<module>[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w.]*)"
)


def _check_run_type(run_type: object) -> str:
    if not isinstance(run_type, str) or not _RUN_TYPE.fullmatch(run_type):
        raise ValueError(
            f"run type must be 1-200 characters of letters, digits and _ . : -"
            f" (not starting with . : -), got {run_type!r}"
        )
    return run_type


def is_async_callable(handler: object) -> bool:
    """Whether ``handler`` is an async function (or an object whose ``__call__`` is)."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an instance with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class HandlerRegistry:
    """Handlers by run type. Built once when the node starts, read by every run actor."""

    __slots__ = ("_handlers",)

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        for run_type, handler in (handlers or {}).items():
            self.register(run_type, handler)

    def __repr__(self) -> str:
        return f"<HandlerRegistry {', '.join(self.run_types()) or 'empty'}>"

    def __contains__(self, run_type: object) -> bool:
        return run_type in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.run_types())

    def register(self, run_type: str, handler: Handler, *, replace: bool = False) -> None:
        """Run ``handler`` for runs of ``run_type``.

        Registering the same handler again is a no-op.

        Raises:
            ValueError: ``run_type`` is not a valid name, or another handler already has
                it (pass ``replace=True`` to swap it).
            TypeError: ``handler`` is not an async callable.
        """
        _check_run_type(run_type)
        if not is_async_callable(handler):
            raise TypeError(
                f"the handler for run type {run_type!r} must be an async function"
                f" (async def handler(ctx) -> result), got {handler!r}"
            )
        current = self._handlers.get(run_type)
        if current is not None and current is not handler and not replace:
            raise ValueError(
                f"run type {run_type!r} already has a handler ({_describe(current)});"
                " pass replace=True to swap it"
            )
        self._handlers[run_type] = handler

    def get(self, run_type: str) -> Handler:
        """The handler of ``run_type``.

        Raises:
            UnknownRunType: none is registered; the error lists the registered run types.
        """
        handler = self._handlers.get(run_type)
        if handler is None:
            raise UnknownRunType(run_type, self._handlers)
        return handler

    def run_types(self) -> tuple[str, ...]:
        """The registered run types, sorted."""
        return tuple(sorted(self._handlers))

    def update(self, other: HandlerRegistry, *, replace: bool = False) -> None:
        """Register every handler of ``other`` here (see :meth:`register`)."""
        for run_type, handler in other._handlers.items():
            self.register(run_type, handler, replace=replace)

    def load(self, spec: str, *, replace: bool = False) -> tuple[str, ...]:
        """Import and register the handler(s) named by ``spec``; return their run types.

        ``spec`` is ``module:attr`` or ``run_type=module:attr`` (``attr`` may be dotted).
        The object found may be a handler (its run type is the one given, else the
        handler's ``run_type`` attribute, else ``attr``'s last part), a mapping of run
        types to handlers, or a :class:`HandlerRegistry`.

        Raises:
            HandlerLoadError: the spec is malformed, the module cannot be imported, the
                attribute is missing, or what it names is not a handler; nothing was
                registered.
        """
        given: object = spec  # checked at run time: it comes from the command line
        match = _SPEC.fullmatch(spec.strip()) if isinstance(given, str) else None
        if match is None:
            raise HandlerLoadError(str(spec), "expected module:attr or run_type=module:attr")
        target = _resolve(spec, match["module"], match["attr"])
        staged = HandlerRegistry()
        try:
            if isinstance(target, HandlerRegistry):
                staged.update(target)
            elif isinstance(target, Mapping):
                for run_type, handler in target.items():
                    staged.register(run_type, handler)
            else:
                run_type = (
                    match["run_type"]
                    or getattr(target, "run_type", None)
                    or match["attr"].rpartition(".")[2]
                )
                staged.register(run_type, target)
            if match["run_type"] and len(staged) != 1:
                raise ValueError("a run type can only name a single handler")
            for run_type in staged.run_types():
                current = self._handlers.get(run_type)
                if not replace and current not in (None, staged._handlers[run_type]):
                    raise ValueError(
                        f"run type {run_type!r} already has a handler ({_describe(current)})"
                    )
        except (TypeError, ValueError) as error:
            raise HandlerLoadError(spec, str(error)) from error
        self.update(staged, replace=True)
        return staged.run_types()

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Self:
        """A registry of every handler installed under the entry-point ``group``: each
        entry's name is the run type.

        Raises:
            HandlerLoadError: an entry point cannot be loaded or is not a handler.
        """
        registry = cls()
        for entry in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            spec = f"{entry.name}={entry.value}"
            try:
                handler = entry.load()
            except Exception as error:
                raise HandlerLoadError(spec, f"{type(error).__name__}: {error}") from error
            try:
                registry.register(entry.name, handler)
            except (TypeError, ValueError) as error:
                raise HandlerLoadError(spec, str(error)) from error
        return registry


def _resolve(spec: str, module_name: str, attr: str) -> Any:
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # the module's own import-time error, whatever it is
        raise HandlerLoadError(
            spec, f"cannot import {module_name!r}: {type(error).__name__}: {error}"
        ) from error
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(spec, f"{module_name!r} has no attribute {attr!r}") from None
    return target


def _describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}:{name}"
