"""One-dimensional PostgreSQL arrays in binary format, built in one pass per array.

The group-commit statement sends its events as arrays (``unnest`` on the server), eight
of them with one element per event. psycopg dumps a list parameter element by element in
Python; for a batch of 50 events that was about a third of the writer's CPU per batch
(about 1 ms on the benchmark machine). These builders encode a whole array with a few
C-level joins instead. Each result is a ``bytes`` subclass naming its array type, and
:func:`register` installs on one connection (never globally) the dumpers that pass those
bytes through as binary parameters of that type.

Binary array format (PostgreSQL ``array_send``): ndim, has-nulls flag, element type oid,
then per dimension its length and lower bound, then per element a 4-byte length (-1 for
NULL) and the element's binary form.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from psycopg.adapt import Dumper
from psycopg.pq import Format

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from uuid import UUID

    from psycopg.abc import AdaptContext, Buffer

__all__ = [
    "BoolArray",
    "ByteaArray",
    "Int8Array",
    "TextArray",
    "UuidArray",
    "bool_array",
    "bytea_array",
    "fixed",
    "int8_array",
    "register",
    "text_array",
    "uuid_array",
]

_HEADER = struct.Struct(">iiiii")  # ndim, has nulls, element oid, length, lower bound
_EMPTY = struct.Struct(">iii")  # ndim 0, no nulls, element oid
_NULL = b"\xff\xff\xff\xff"
_LEN1 = b"\x00\x00\x00\x01"
_TRUE = _LEN1 + b"\x01"
_FALSE = _LEN1 + b"\x00"


class _Array(bytes):
    """A binary array parameter; subclasses name the PostgreSQL array type."""

    oid: ClassVar[int]  # the array type
    element_oid: ClassVar[int]


_A = TypeVar("_A", bound=_Array)


class UuidArray(_Array):
    """``uuid[]``."""

    oid = 2951
    element_oid = 2950


class Int8Array(_Array):
    """``bigint[]``."""

    oid = 1016
    element_oid = 20


class TextArray(_Array):
    """``text[]``."""

    oid = 1009
    element_oid = 25


class ByteaArray(_Array):
    """``bytea[]``."""

    oid = 1001
    element_oid = 17


class BoolArray(_Array):
    """``boolean[]``."""

    oid = 1000
    element_oid = 16


def _header(kind: type[_Array], count: int, has_nulls: bool = False) -> bytes:
    if not count:
        return _EMPTY.pack(0, 0, kind.element_oid)  # an empty array has no dimensions
    return _HEADER.pack(1, has_nulls, kind.element_oid, count, 1)


def fixed(kind: type[_A], elements: list[bytes]) -> _A:
    """``elements`` (binary forms, all of one length) as a binary array of ``kind``.

    Every element gets the same length prefix, so one join puts them all in place. The
    caller guarantees the common length (``UUID.bytes``, 8-byte integers, digests).
    """
    if not elements:
        return kind(_header(kind, 0))
    length = len(elements[0]).to_bytes(4, "big")
    return kind(_header(kind, len(elements)) + length + length.join(elements))


def uuid_array(values: Sequence[UUID]) -> UuidArray:
    """``values`` as a binary ``uuid[]``."""
    return fixed(UuidArray, [u.bytes for u in values])


def int8_array(values: Sequence[int]) -> Int8Array:
    """``values`` as a binary ``bigint[]``."""
    return fixed(Int8Array, [v.to_bytes(8, "big", signed=True) for v in values])


def bool_array(values: Sequence[bool]) -> BoolArray:
    """``values`` as a binary ``boolean[]``."""
    return BoolArray(
        _header(BoolArray, len(values)) + b"".join([_TRUE if v else _FALSE for v in values])
    )


def _varlen(kind: type[_Array], values: Sequence[bytes | None]) -> bytes:
    parts: list[bytes] = []
    has_nulls = False
    for value in values:
        if value is None:
            parts.append(_NULL)
            has_nulls = True
        else:
            parts.append(len(value).to_bytes(4, "big"))
            parts.append(value)
    return _header(kind, len(values), has_nulls) + b"".join(parts)


def bytea_array(values: Sequence[bytes]) -> ByteaArray:
    """``values`` as a binary ``bytea[]``."""
    return ByteaArray(_varlen(ByteaArray, values))


def text_array(values: Iterable[bytes | str | None]) -> TextArray:
    """``values`` (UTF-8 bytes, or str) as a binary ``text[]``; ``None`` is NULL."""
    encoded = [value.encode() if isinstance(value, str) else value for value in values]
    return TextArray(_varlen(TextArray, encoded))


def _dumper(kind: type[_Array]) -> type[Dumper]:
    class _ArrayDumper(Dumper):
        format = Format.BINARY
        oid = kind.oid

        def dump(self, obj: Any) -> Buffer | None:
            return obj  # type: ignore[no-any-return]

    _ArrayDumper.__name__ = _ArrayDumper.__qualname__ = f"{kind.__name__}Dumper"
    return _ArrayDumper


_DUMPERS = {
    kind: _dumper(kind) for kind in (UuidArray, Int8Array, TextArray, ByteaArray, BoolArray)
}


def register(context: AdaptContext) -> None:
    """Let ``context`` (a connection) send these arrays as binary parameters."""
    for kind, dumper in _DUMPERS.items():
        context.adapters.register_dumper(kind, dumper)
