"""The client's errors mirror the gateway's codes; unknown shapes fall back by status."""

from __future__ import annotations

import uuid

import orjson
import pytest

from actors import WardenError
from transport import client
from transport._client_errors import error_from_answer

RUN = uuid.UUID("7b3f1a52-7d8e-4d7e-9c4b-2f0a1c3e5d70")


def body(code: str, message: str = "no.", **extra: object) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}, **extra})


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", client.InvalidRequest),
        (400, "unknown_run_type", client.UnknownRunType),
        (400, "invalid_cursor", client.InvalidCursor),
        (400, "cursor_conflict", client.InvalidCursor),
        (401, "token_replayed", client.Unauthenticated),
        (403, "forbidden", client.Forbidden),
        (404, "run_not_found", client.RunNotFound),
        (404, "not_found", client.NotFound),
        (409, "run_conflict", client.RunConflict),
        (409, "run_terminal", client.RunTerminal),
        (410, "stale_cursor", client.StaleCursor),
        (413, "payload_too_large", client.PayloadTooLarge),
        (429, "admission_rejected", client.AdmissionRejected),
        (503, "unavailable", client.Unavailable),
    ],
)
def test_each_code_has_its_class_carrying_status_code_and_run(
    status: int, code: str, cls: type[client.ClientError]
) -> None:
    error = error_from_answer(status, body(code, "one  line\nonly"), RUN)
    assert type(error) is cls
    assert isinstance(error, WardenError)
    assert (error.status, error.code, error.run_id) == (status, code, RUN)
    assert error.message == "one line only"
    assert str(error) == f"{status} {code}: one line only (run {RUN})"


def test_an_unknown_code_falls_back_on_the_status() -> None:
    error = error_from_answer(409, body("brand_new_conflict"))
    assert type(error) is client.Conflict
    assert error.code == "brand_new_conflict"


def test_a_body_that_is_not_the_error_shape_is_a_server_error_quoting_it() -> None:
    error = error_from_answer(502, b"<html>bad gateway</html>")
    assert type(error) is client.ServerError
    assert error.code == "server_error"
    assert "bad gateway" in error.message


def test_an_admission_refusal_names_the_pending_run() -> None:
    pending = uuid.uuid4()
    error = error_from_answer(429, body("admission_rejected", run_id=str(pending)))
    assert isinstance(error, client.AdmissionRejected)
    assert error.run_id == pending


def test_errors_read_as_transport_client_in_tracebacks() -> None:
    assert client.RunNotFound.__module__ == "transport.client"
    assert issubclass(client.RequestTimeout, TimeoutError)
    assert issubclass(client.StreamInterrupted, client.NetworkError)
