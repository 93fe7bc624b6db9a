"""Per-node names for actors. A name is freed when its actor stops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors._ref import process_of
from actors.errors import ActorStopped, NameTaken, RegistryFull

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterator

    from actors._ref import ActorRef

__all__ = ["Registry"]


class Registry:
    """Maps names (any hashable, e.g. ``("run", run_id)``) to live actors.

    One registry per node, passed to whoever needs it; there is no global one.

    Args:
        capacity: most names it holds; defaults to 100 000.
    """

    __slots__ = ("_capacity", "_names")

    def __init__(self, *, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"registry capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._names: dict[Hashable, ActorRef[Any]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: Hashable) -> bool:
        return name in self._names

    def names(self) -> Iterator[Hashable]:
        return iter(list(self._names))

    def register(self, name: Hashable, ref: ActorRef[Any]) -> None:
        """Bind ``name`` to ``ref`` until the actor stops.

        Raises:
            NameTaken: another live actor holds the name.
            ActorStopped: ``ref``'s actor has already stopped.
            RegistryFull: the registry is at capacity.
        """
        process = process_of(ref)
        reason = process.exit_reason
        if reason is not None:
            raise ActorStopped(process.label, reason)
        holder = self._names.get(name)
        if holder is not None:
            if holder is ref:
                return
            raise NameTaken(name, holder.label)
        if len(self._names) >= self._capacity:
            raise RegistryFull(self._capacity)
        self._names[name] = ref
        process.remember_name(self, name)

    def unregister(self, name: Hashable) -> None:
        """Free ``name``; no error if it is not registered."""
        ref = self._names.pop(name, None)
        if ref is not None:
            process_of(ref).forget_name(self, name)

    def whereis(self, name: Hashable) -> ActorRef[Any] | None:
        """The live actor registered under ``name``, or ``None``."""
        return self._names.get(name)
