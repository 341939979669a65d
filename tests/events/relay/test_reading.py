"""The relay's read: rounds sized to the backlog, and a statement that walks the pending rows."""

import uuid

import pytest
from django.db import connection
from django.utils import timezone

from events.models import OutboxEvent
from events.relay.reading import AdaptiveBatch


def test_rounds_start_small_double_while_each_read_fills_its_batch_and_shrink_at_the_first_short_read():
    batch = AdaptiveBatch(4000)
    sizes = []
    for rows_waiting in (250, 500, 1000, 2000, 4000, 4000, 1200, 3, 250):
        sizes.append(batch.size)
        batch.read(min(rows_waiting, batch.size))
    assert sizes == [250, 500, 1000, 2000, 4000, 4000, 4000, 250, 250]
    assert batch.size == 500
    assert AdaptiveBatch(10).size == 10  # never above the largest


@pytest.mark.django_db(transaction=True)
def test_the_relays_query_reads_a_50000_row_backlog_through_its_two_partial_indexes_around_its_window():
    OutboxEvent.objects.bulk_create(
        [OutboxEvent(event_id=uuid.uuid4(), event_type="sync.task_changed", topic="task-updates", key=str(i % 5000),
                     payload="{}") for i in range(50_000)],
        batch_size=5000,
    )
    OutboxEvent.objects.filter(id__in=OutboxEvent.objects.order_by("id").values("id")[:3]).update(
        parked_at=timezone.now(), park_reason="test"
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events_outboxevent")
    in_flight = list(OutboxEvent.objects.order_by("id").values_list("id", flat=True)[3:8003])
    plan = OutboxEvent.objects.ready().unlisted(in_flight).order_by("id").values_list("id")[:4000].explain()
    # An ordered walk of the pending rows, each checked against the few parked ones and a hash of
    # the window: no sort, no full scan, no parallel workers (which cost more than they save).
    assert "outbox_pending" in plan and "outbox_parked" in plan and "hashed SubPlan" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan and "Gather" not in plan, plan
