"""The client's event-stream decoder: the WHATWG parsing rules, any chunking, bounded."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport._sse_decoder import ServerSentEvent, SSEDecoder, SSEProtocolError

STREAM = (
    b"retry: 1500\n"
    b'id: 1\nevent: run.started\ndata: {"seq": 1}\n\n'
    b": hb\n\n"
    b"id: 2\r\nevent: echo\r\ndata: line one\r\ndata:line two\r\n\r\n"
    b"id: 3\revent: run.succeeded\rdata: {}\r\r"
)

EXPECTED = [
    ServerSentEvent("run.started", '{"seq": 1}', "1", 1500),
    ServerSentEvent("echo", "line one\nline two", "2", None),
    ServerSentEvent("run.succeeded", "{}", "3", None),
]


def decode(chunks: list[bytes], **bounds: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**bounds)
    return [message for chunk in chunks for message in decoder.feed(chunk)]


def test_the_three_line_endings_comments_and_multi_line_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EXPECTED
    assert decoder.comments == 1
    assert decoder.last_id == "3"


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_decodes_the_same(cuts: list[int]) -> None:
    bounds = sorted({0, len(STREAM), *cuts})
    chunks = [STREAM[start:end] for start, end in itertools.pairwise(bounds)]
    assert decode(chunks) == EXPECTED


def test_a_cr_lf_split_across_chunks_is_one_line_end() -> None:
    assert decode([b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]) == [
        ServerSentEvent("message", "a", None, None),
        ServerSentEvent("message", "b", None, None),
    ]


def test_field_rules_of_the_spec() -> None:
    chunks = [
        b"data\n",  # a field with no colon: the empty value
        b"data:  two spaces keep one\n",
        b"id: a\x00b\n",  # an id with NUL is ignored
        b"retry: 12x\n",  # a non-numeric retry is ignored
        b"unknown: field\n",
        b"\n",
    ]
    assert decode(chunks) == [ServerSentEvent("message", "\n two spaces keep one", None, None)]


def test_a_message_without_data_is_not_an_event_but_keeps_its_retry() -> None:
    assert decode([b"event: x\n\n", b"retry: 20\n\n"]) == [
        ServerSentEvent("message", None, None, 20)
    ]


def test_the_id_persists_across_messages() -> None:
    assert [m.id for m in decode([b"id: 7\ndata: a\n\ndata: b\n\n"])] == ["7", "7"]


def test_a_line_over_the_bound_is_refused_without_waiting_for_its_end() -> None:
    decoder = SSEDecoder(max_line=64)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(SSEProtocolError, match="longer than 64 bytes"):
        decoder.feed(b"x" * 20)


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + b"x" * 70 + b"\n\n"],  # whole in one chunk
        [b"data: " + b"x" * 40, b"x" * 30 + b"\n\n"],  # ended by the chunk that passes it
    ],
)
def test_a_complete_line_over_the_bound_is_refused(chunks: list[bytes]) -> None:
    with pytest.raises(SSEProtocolError, match="longer than 64 bytes"):
        decode(chunks, max_line=64)


def test_a_message_over_the_bound_is_refused() -> None:
    with pytest.raises(SSEProtocolError, match="larger than 100 bytes"):
        decode([b"data: " + b"x" * 40 + b"\n"] * 3, max_message=100)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(SSEProtocolError, match="not UTF-8"):
        decode([b"data: \xff\n\n"])


def reference_decode(stream: bytes) -> list[ServerSentEvent]:
    """The spec's algorithm, line by line, as plainly as it reads (no bounds)."""
    out: list[ServerSentEvent] = []
    event, data, last_id, retry = "", list[str](), None, None
    for raw in re.split(rb"\r\n|\r|\n", stream)[:-1]:  # the last piece has no line end
        line = raw.decode()
        if not line:
            if data or retry is not None:
                out.append(
                    ServerSentEvent(
                        event or "message",
                        "\n".join(data) if data else None,
                        last_id,
                        retry,
                    )
                )
            event, data, retry = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return out


_LINES = st.sampled_from(
    [
        b"",
        b": hb",
        b"data: x",
        b"data:y",
        b"data",
        b"event: echo",
        b"id: 4",
        b"id: 5",
        b"retry: 30",
        b"retry: 3x",
        b"other: z",
        b'data: {"seq": 1}',
    ]
)


@given(
    st.lists(st.tuples(_LINES, st.sampled_from([b"\n", b"\r", b"\r\n"])), max_size=40),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_any_stream_in_any_chunking_decodes_as_the_spec_reads_it(
    lines: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(line + end for line, end in lines)
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    chunks = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    assert decode(chunks) == reference_decode(stream)
