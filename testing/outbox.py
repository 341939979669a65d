"""Outbox rows written straight into the table, and the outbox relay run in a thread of this process."""

import threading
from contextlib import contextmanager

from django.db import transaction

from events.models import OutboxEvent
from events.outbox import serialise
from events.relay.loop import OutboxRelay
from testing.factories import sync_task_changed


def outbox_rows(*specs):
    """Rows written straight into the outbox (as if emit had let them through), in the given order:
    ``(task_id, description)`` each, a sync.task_changed of that task; returns them."""
    rows = []
    with transaction.atomic():
        for task_id, description in specs:
            event = sync_task_changed(task_id, description)
            rows.append(OutboxEvent.objects.create(
                event_id=event["event_id"], event_type=event["event_type"], topic="task-updates", key=task_id,
                payload=serialise(event),
            ))
    return rows


@contextmanager
def relay_thread(poll_interval=0.2, **options):
    """An OutboxRelay (with these options) running in a thread of this process until the block ends."""
    stop = threading.Event()
    relay = OutboxRelay(poll_interval=poll_interval, stop=stop, **options)
    thread = threading.Thread(target=relay.run, name="outbox-relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the relay did not stop"
