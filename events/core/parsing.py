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
    """
    if value is None:
        raise InvalidEvent("the message has no value (a tombstone), not an event")
    document = json.loads(value.decode("utf-8") if isinstance(value, bytes | bytearray) else value)
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
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidEvent(f"a number out of range ({item})")
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidEvent("a string with a NUL character (\\u0000)")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidEvent("a string with a lone surrogate (a \\ud800-\\udfff escape)") from None
    return document
