"""The audit service's handlers: every task event, stored once."""

from datetime import datetime

from audit.models import AuditEntry
from events.consumer import delivery_of


def record_task_event(event):
    record_task_events([event])


def record_task_events(events):
    # The runtime already skips redelivered events; the unique event_id is the second line of
    # defence (ON CONFLICT DO NOTHING), e.g. for a rebuild of the trail under another group.
    AuditEntry.objects.bulk_create([_entry(event) for event in events], ignore_conflicts=True)


def _entry(event):
    data = event["data"]
    delivery = delivery_of(event)
    return AuditEntry(
        event_id=event["event_id"],
        event_type=event["event_type"],
        task_id=data["task_id"],
        user_id=data["user_id"],
        title=data["title"],
        occurred_at=datetime.fromisoformat(event["timestamp"]),
        data=data,
        metadata=event["metadata"],
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
    )
