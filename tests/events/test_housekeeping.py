"""Periodic housekeeping: what it purges, that beat has it scheduled, and that a real worker runs it."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from events import retention
from events.models import OutboxEvent, ProcessedEvent
from events.tasks import purge_processed_events, purge_sent_outbox
from testing.db import rows_deleted_per_statement
from testing.processes import Process, program, worker_environment
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def outbox_row(sent_ago=None):
    row = OutboxEvent.objects.create(event_id=uuid.uuid4(), event_type="task.created", topic="task-events", key="k", payload="{}")
    if sent_ago is not None:
        OutboxEvent.objects.filter(pk=row.pk).update(sent_at=timezone.now() - sent_ago)
    return row.pk


def processed_row(age):
    row = ProcessedEvent.objects.create(consumer_group="audit-service", event_id=uuid.uuid4())
    ProcessedEvent.objects.filter(event_id=row.event_id).update(processed_at=timezone.now() - age)
    return row.event_id


def test_purging_the_outbox_deletes_only_rows_sent_over_a_day_ago():
    outbox_row(timedelta(days=2))
    recent, unsent = outbox_row(timedelta(hours=1)), outbox_row()
    assert purge_sent_outbox() == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {recent, unsent}


def test_processed_event_ids_are_kept_longer_than_kafka_keeps_events():
    expired, kept = processed_row(timedelta(days=15)), processed_row(timedelta(days=8))
    assert purge_processed_events() == 1
    assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == [kept]
    assert expired != kept


@pytest.mark.parametrize(
    "purge, old_row, young_row",
    [
        (purge_sent_outbox, lambda: outbox_row(timedelta(days=2)), lambda: outbox_row()),
        (purge_processed_events, lambda: processed_row(timedelta(days=15)), lambda: processed_row(timedelta(days=1))),
    ],
    ids=["outbox", "processed-events"],
)
def test_a_backlog_is_purged_in_bounded_batches_never_one_unbounded_delete(purge, old_row, young_row, monkeypatch):
    for _ in range(5):
        old_row()
    young_row()
    monkeypatch.setattr(retention, "PURGE_BATCH_SIZE", 2)

    with rows_deleted_per_statement() as deleted:
        assert purge() == 5

    assert deleted == [2, 2, 1]


@pytest.mark.django_db  # not transactional: the schedule is data of a migration, which a flush removes
def test_every_housekeeping_task_is_on_the_beat_schedule():
    scheduled = set(PeriodicTask.objects.filter(enabled=True).values_list("task", flat=True))
    assert {"events.purge_sent_outbox", "events.purge_processed_events", "notifications.fire_stuck_reminders"} <= scheduled


@pytest.mark.e2e  # starts a server process in its body
def test_a_celery_worker_runs_a_housekeeping_task_sent_through_redis(tmp_path):
    old = outbox_row(timedelta(days=2))
    queue = f"test-{uuid.uuid4().hex[:8]}"  # this test's own queue: no other worker takes its task
    worker = Process(
        program("celery", "-A", "todo_project", "worker", "-Q", queue, "--concurrency=1", "--without-mingle",
                "--without-gossip"),
        tmp_path / "celery.log",
        worker_environment(),
    ).start()
    try:
        purge_sent_outbox.apply_async(queue=queue)
        assert wait_for(lambda: not OutboxEvent.objects.filter(pk=old).exists(), timeout=90), worker.log()
    finally:
        assert worker.stop() == 0, worker.log()
