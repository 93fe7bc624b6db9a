"""Request bodies, query strings and path ids, parsed with pydantic (DESIGN §10).

Every parser raises :class:`~transport._errors.ApiError` 400 (or 413/415) with a message
naming the offending field, so a handler only ever sees valid, typed input. Models are
strict (no coercion of ``"1"`` to ``1`` in bodies) and refuse unknown fields; query
strings arrive as text, so their models convert numbers from digits only.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson
import pydantic

from transport._errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp import web

__all__ = [
    "Body",
    "Query",
    "parse_body",
    "parse_cursor",
    "parse_query",
    "parse_run_id",
]

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

_JSON: Final = "application/json"
_MAX_CURSOR: Final = 2**63 - 1


class Body(pydantic.BaseModel):
    """Base of request bodies: strict types, unknown fields refused, frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)


class Query(pydantic.BaseModel):
    """Base of query strings: unknown parameters refused; numbers from their digits."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def _describe(error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


async def parse_body(
    request: web.Request, model: type[ModelT], *, optional: bool = False
) -> ModelT:
    """The request's JSON body as ``model``; an empty body is ``model()`` when
    ``optional``.

    Raises:
        ApiError: 415 not ``application/json``; 413 over the body limit; 400
            ``invalid_json`` or ``invalid_request`` (naming the fields).
    """
    raw = await request.read()  # aiohttp refuses a body over client_max_size with 413
    if not raw and optional:
        return model()
    if request.content_type != _JSON:
        raise ApiError(
            415, "unsupported_media_type", f"the body must be {_JSON}, not {request.content_type}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    return validate(model, data)


def validate(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """``data`` as ``model``, or 400 ``invalid_request``."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        raise ApiError(400, "invalid_request", _describe(error)) from None


def parse_query(
    request: web.Request, model: type[ModelT], *, ignore: tuple[str, ...] = ()
) -> ModelT:
    """The query string as ``model`` (a parameter given twice is refused); parameters
    in ``ignore`` are left out (read by the caller itself)."""
    values: dict[str, str] = {}
    for name, value in request.query.items():
        if name in ignore:
            continue
        if name in values:
            raise ApiError(400, "invalid_request", f"query parameter {name!r} is given twice")
        values[name] = value
    return validate(model, values)


def parse_run_id(request: web.Request) -> uuid.UUID:
    """The ``{run_id}`` of the path; a malformed one is an unknown run (404)."""
    text = request.match_info["run_id"]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ApiError(404, "run_not_found", f"run {text[:64]!r} not found") from None


def parse_cursor(text: str, where: str) -> int:
    """A stream cursor: the decimal digits of a seq, 0 to 2**63-1 (400 ``invalid_cursor``)."""
    digits = text.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        raise ApiError(
            400,
            "invalid_cursor",
            f"{where} must be a non-negative integer (a seq), got {text[:32]!r}",
        )
    value = int(digits)
    if value > _MAX_CURSOR:
        raise ApiError(400, "invalid_cursor", f"{where} is out of range")
    return value
