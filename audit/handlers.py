"""The audit service's handler: every task event, stored once."""

from datetime import datetime

from audit.models import AuditEntry
from events.consumer import current_delivery


def record_task_event(event):
    data = event["data"]
    delivery = current_delivery()
    # The runtime already skips redelivered events; the unique event_id is the second line of
    # defence (ON CONFLICT DO NOTHING), e.g. for a replayed dead letter of another group.
    AuditEntry.objects.bulk_create(
        [
            AuditEntry(
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
        ],
        ignore_conflicts=True,
    )
