"""Step 1 of processing, on message values alone: what is an event to handle, what a dead letter.

``load_event`` clears most documents on their text and walks only those the text does not clear;
either way the verdict must be the same, so each rule is checked on both sides of that line.
"""

import json

import pytest

from events.core.parsing import MAX_EVENT_DEPTH, load_event, parse
from events.schemas import InvalidEvent
from testing.factories import task_event

pytestmark = pytest.mark.django_db


def nested(depth):
    """A JSON document ``depth`` levels deep (the outer object is level 1)."""
    document = {}
    for _ in range(depth - 1):
        document = {"x": document}
    return document


def test_a_valid_event_parses_with_its_event_id_in_canonical_form():
    event = task_event()
    shouted = {**event, "event_id": event["event_id"].upper()}
    parsed = parse(json.dumps(shouted).encode())
    assert parsed.invalid is None and parsed.event["event_id"] == event["event_id"]
    assert parsed.event["data"] == event["data"]


@pytest.mark.parametrize("text", ['{"s": "a\\u0000b"}', '{"s": "\\ud800"}', '{"s": "\\uDFFF"}', '{"s": "x\\udc00y"}'],
                         ids=["nul", "lone-high", "lone-low-upper-case", "lone-low"])
def test_an_escape_postgresql_cannot_store_is_refused(text):
    with pytest.raises(InvalidEvent):
        load_event(text.encode())


@pytest.mark.parametrize("text", ['{"s": "\\ud83d\\ude00"}', '{"s": "\\\\u0000"}', '{"s": "\\u00e9\\u0001"}'],
                         ids=["a-surrogate-pair", "an-escaped-backslash-then-u0000", "other-escapes"])
def test_escapes_that_only_look_suspicious_are_accepted(text):
    assert load_event(text.encode()) == json.loads(text)


def test_a_lone_surrogate_in_a_text_value_is_refused():
    with pytest.raises(UnicodeEncodeError):
        load_event('{"s": "\ud800"}')


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_a_number_postgresql_cannot_store_is_refused(number):
    with pytest.raises(InvalidEvent, match="out of range"):
        load_event(f'{{"n": {number}}}'.encode())


def test_finite_numbers_are_kept():
    assert load_event(b'{"f": 1.5e300, "i": 12345678901234567890}') == {"f": 1.5e300, "i": 12345678901234567890}


def test_nesting_up_to_the_limit_is_accepted_and_one_level_more_is_refused():
    assert load_event(json.dumps(nested(MAX_EVENT_DEPTH)).encode()) == nested(MAX_EVENT_DEPTH)
    with pytest.raises(InvalidEvent, match="nested deeper"):
        load_event(json.dumps(nested(MAX_EVENT_DEPTH + 1)).encode())


def test_many_brackets_inside_strings_or_side_by_side_are_not_depth():
    flat = {"text": "[[[{{{" * 10, "items": [[1], [2], [3], {"a": [4]}] * 5}
    assert load_event(json.dumps(flat).encode()) == flat


def test_a_suspicious_escape_deep_down_is_still_found():
    document = nested(MAX_EVENT_DEPTH - 1)
    document["s"] = "\u0000"
    with pytest.raises(InvalidEvent, match="NUL"):
        load_event(json.dumps(document).encode())
