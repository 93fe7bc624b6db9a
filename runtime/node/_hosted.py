"""Actors of the node's tree that hold something for their whole life.

The store, the listener, the gateway's socket and the periodic loops of membership and
the janitor are opened when their actor starts and closed when it stops, in the actor's
own task: an anyio task group or an ``async with`` resource must be left in the task
that entered it, around everything that runs inside it. The kernel gives actors that
scope as their ``lifespan()`` hook (the one supervisors run their children in);
:class:`HostedActor` is the node's single use of it, so each subclass only says what it
holds, as an async context manager, and its failures become the actor's exit reason:

* an error while opening fails the actor's start (the node reports which part failed);
* a background task of the actor that fails cancels the actor and ends it with that
  error (its supervisor restarts it);
* leaving closes everything in reverse order, also when the actor is killed (the
  kernel leaves the lifespan even then, so nothing it opened outlives it).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from actors import Actor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from anyio.abc import TaskGroup

__all__ = ["HostedActor", "Resource"]

M = TypeVar("M")
R = TypeVar("R")


class HostedActor(Actor[M]):
    """An actor with a task group and resources held for its incarnation's life.

    Subclasses override :meth:`hold` for resources and start background tasks in
    :attr:`tasks` from ``on_start``; those tasks are cancelled when the actor stops,
    before the resources are closed.
    """

    _tasks: TaskGroup | None = None

    @property
    def tasks(self) -> TaskGroup:
        """The task group of this incarnation (from ``on_start`` on)."""
        if self._tasks is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._tasks

    def hold(self) -> AbstractAsyncContextManager[object]:
        """What this actor holds while it runs (entered before ``on_start``)."""
        return contextlib.nullcontext()

    def lifespan(self) -> AbstractAsyncContextManager[object]:
        return self._hold_and_run()

    @contextlib.asynccontextmanager
    async def _hold_and_run(self) -> AsyncIterator[None]:
        # Resources are opened first and closed last: the background tasks that use
        # them (started from on_start) are cancelled before anything they use is closed.
        async with self.hold(), anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                yield
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()


class Resource(HostedActor[Any], Generic[R]):
    """Holds one async context manager (the store, the listener) for its life.

    Args:
        name: what it holds, for errors and logs.
        opener: builds a fresh, unopened context manager for each incarnation.
        on_open: called with the opened value (the node keeps the current one).
    """

    def __init__(
        self,
        name: str,
        opener: Callable[[], AbstractAsyncContextManager[R]],
        on_open: Callable[[R], None],
    ) -> None:
        self.name = name
        self._opener = opener
        self._on_open = on_open

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._opener() as value:
            self._on_open(value)
            yield

    async def handle(self, message: Any) -> object:
        raise TypeError(f"the {self.name} actor takes no messages")
