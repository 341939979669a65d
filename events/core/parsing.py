"""Step 1 of processing: is a message's value an event of the contract, and one to handle?

Anything that is not an event of the contract is a dead letter at once (the handler never runs):
no value (a tombstone), not UTF-8, not JSON, JSON of any depth or type that is not an event
object (``validate_event`` raises InvalidEvent), or an event the handlers could not store (nested
deeper than MAX_EVENT_DEPTH, NaN or infinite numbers, NUL characters or lone surrogates in
strings: PostgreSQL refuses them, so they would fail every retry). Whatever a message's bytes
make the parser raise is the message's fault: the consumer never exits on a message's content.
An event of an unknown ``event_type`` is skipped, not dead-lettered.
"""

import json
import math
import re
from typing import NamedTuple

from events.schemas import InvalidEvent, UnknownEventType, event_uuid, validate_event

# Our events are four levels deep (envelope, data, task, tags); anything far deeper is not ours, and
# the handlers' own recursion (json.dumps, the database driver) must never be the first to notice.
MAX_EVENT_DEPTH = 16


class Parsed(NamedTuple):
    """What a message is: an ``event`` to handle, an ``invalid`` error (a dead letter), or, with
    both None, an event of an unknown type (``unknown`` says which), to skip."""

    event: dict | None = None
    invalid: BaseException | None = None
    unknown: UnknownEventType | None = None


def parse(value):
    """The Parsed of a message's value."""
    try:
        event = validate_event(load_event(value))
        event_id = event_uuid(event["event_id"], "event_id")  # the idempotency record needs a real UUID
    except UnknownEventType as exc:
        return Parsed(unknown=exc)
    except Exception as exc:  # noqa: BLE001 - whatever a message's bytes make us raise is the message's fault
        return Parsed(invalid=exc)
    return Parsed(event={**event, "event_id": str(event_id)})


def load_event(value):
    """The JSON document of a message's value, or an exception saying why it cannot be an event.

    Only UTF-8 JSON (the contract's wire format; json.loads would also guess UTF-16 and UTF-32)
    whose handling cannot fail for its shape: at most MAX_EVENT_DEPTH levels deep, only finite
    numbers, and strings that PostgreSQL can store (no NUL, no lone surrogate). Deeper input than
    Python's recursion limit raises RecursionError inside json.loads, which the caller treats
    like any other error of the message.

    Most of these are ruled out on the text, at C speed: a NUL or a surrogate can only come in as
    a ``\\u`` escape, and a document with fewer brackets than MAX_EVENT_DEPTH cannot be deeper;
    NaN, Infinity and numbers that overflow are refused as json.loads reads them. Only a document
    the text does not clear (an escape that may be one, many brackets) is walked node by node.
    """
    if value is None:
        raise InvalidEvent("the message has no value (a tombstone), not an event")
    if isinstance(value, bytes | bytearray):
        text = value.decode("utf-8")  # refuses a surrogate's bytes too
    else:
        text = value
        if not text.isascii():
            text.encode("utf-8")  # a str may hold a lone surrogate itself: UnicodeEncodeError, the message's fault
    document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    if _MAY_HOLD_NUL_OR_SURROGATE.search(text) or text.count("{") + text.count("[") > MAX_EVENT_DEPTH:
        _walk(document)
    return document


# The escapes of a NUL (\u0000) and of any surrogate (\ud800-\udfff), paired or not.
_MAY_HOLD_NUL_OR_SURROGATE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _refuse_constant(name):
    raise InvalidEvent(f"a number out of range ({name})")


def _finite_float(text):
    number = float(text)
    if not math.isfinite(number):
        raise InvalidEvent(f"a number out of range ({text})")
    return number


def _walk(document):
    """Every check of ``load_event`` on the parsed document, node by node."""
    pending = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_EVENT_DEPTH:
                raise InvalidEvent(f"nested deeper than {MAX_EVENT_DEPTH} levels")
            if isinstance(item, dict):
                pending.extend((key, depth + 1) for key in item)
                item = item.values()
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidEvent("a string with a NUL character (\\u0000)")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidEvent("a string with a lone surrogate (a \\ud800-\\udfff escape)") from None
