"""The size budget of a dead letter: what is cut, and how the letter says so (no broker)."""

from events.core.dead_letters import (
    DEAD_LETTER_MAX_BYTES,
    HEADER_VALUE_MAX_BYTES,
    ORIGINAL_HEADERS_MAX_BYTES,
    bounded_dead_letter,
)
from events.core.headers import DLQ_TRUNCATED

DLQ_HEADERS = [("dlq.original.topic", "task-events"), ("dlq.error.message", "boom")]


def wire_size(key, value, headers):
    return sum(len(part.encode() if isinstance(part, str) else part or b"") for part in (key, value)) + sum(
        len(name) + len(header.encode() if isinstance(header, str) else header) for name, header in headers
    )


def test_a_dead_letter_within_the_budget_is_the_message_as_it_came():
    headers = [("event_id", b"e1"), ("trace", b"abc")]
    bounded = bounded_dead_letter(b"key", b'{"a": 1}', headers, DLQ_HEADERS)
    assert bounded == (b"key", b'{"a": 1}', headers + DLQ_HEADERS)


def test_oversized_original_headers_and_key_are_cut_and_named_in_dlq_truncated():
    headers = [(f"h{n}", b"v" * 100) for n in range(500)] + [("huge", b"x" * 100_000)]
    key = b"k" * 5000
    cut_key, value, bounded = bounded_dead_letter(key, b"{}", headers, DLQ_HEADERS)

    originals = [(name, header) for name, header in bounded if not name.startswith("dlq.")]
    assert sum(len(name) + len(header) for name, header in originals) <= ORIGINAL_HEADERS_MAX_BYTES
    assert originals == headers[: len(originals)] and len(originals) > 10  # the first ones, whole
    assert cut_key == key[:HEADER_VALUE_MAX_BYTES] and value == b"{}"
    original_header_bytes = sum(len(name) + len(header) for name, header in headers)
    assert dict(bounded)[DLQ_TRUNCATED] == f"key=5000,headers={original_header_bytes}"
    assert [(name, header) for name, header in bounded if name in dict(DLQ_HEADERS)] == DLQ_HEADERS


def test_an_oversized_value_is_cut_to_what_the_budget_leaves_and_our_own_headers_are_valid_utf8():
    error = "\ud800 " + "é" * 5000  # an error quoting a lone surrogate of the event, and long
    key, value, headers = bounded_dead_letter(b"k", b"v" * 2_000_000, [("trace", b"t")], [("dlq.error.message", error)])

    assert dict(headers)[DLQ_TRUNCATED] == "value=2000000"
    assert value == b"v" * len(value)
    assert DEAD_LETTER_MAX_BYTES - 200 < wire_size(key, value, headers) <= DEAD_LETTER_MAX_BYTES
    message = dict(headers)["dlq.error.message"]
    assert message.encode("utf-8") and len(message.encode()) <= HEADER_VALUE_MAX_BYTES
    assert message.startswith("? é")
