"""The write path knows nothing of benchmarks: the OUTBOX_WRITER setting names the function that
stores emitted events, and the benchmark's baselines (bench/outbox_writers.py) are selected there."""

from datetime import UTC, datetime, timedelta

import pytest

from events.models import OutboxEvent
from tasks import services
from tasks.events import EventContext
from tasks.models import Task, TaskChange
from testing.factories import UserFactory
from testing.kafka import TopicReader

CONTEXT = EventContext(source="todo-api", correlation_id="req-writers-1")
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)


@pytest.mark.django_db
def test_by_default_a_change_writes_its_events_as_outbox_rows():
    task = services.task_create(user=UserFactory(), context=CONTEXT, title="noisy", due_date=SOON, remind_at=SOON)
    assert sorted(OutboxEvent.objects.filter(key=str(task.id)).values_list("event_type", flat=True)) == [
        "reminder.scheduled", "sync.task_changed", "task.created",
    ]


@pytest.mark.django_db
def test_with_the_benchmarks_discarding_writer_a_change_is_saved_and_logged_but_emits_nothing(settings):
    settings.OUTBOX_WRITER = "bench.outbox_writers.discard"
    task = services.task_create(user=UserFactory(), context=CONTEXT, title="quiet", due_date=SOON, remind_at=SOON)
    services.task_update(task=task, context=CONTEXT, title="still quiet")
    assert Task.objects.get(pk=task.pk).version == 2
    assert TaskChange.objects.filter(task_id=task.id).count() == 2  # the sync log is the task's, not an event
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_with_the_seeds_writer_the_events_are_on_kafka_when_the_change_returns_without_outbox_or_relay(
    settings, kafka_namespace
):
    settings.OUTBOX_WRITER = "bench.outbox_writers.produce_and_flush"
    task = services.task_create(user=UserFactory(), context=CONTEXT, title="synchronous")
    assert not OutboxEvent.objects.exists()
    # Already on the topic: read to its current end, no waiting for more.
    reader = TopicReader(["task-events"])
    try:
        messages = [m for m in reader.read_to_end(timeout=30) if m.key == str(task.id)]
    finally:
        reader.close()
    assert [(m.event["event_type"], m.event["data"]["title"]) for m in messages] == [("task.created", "synchronous")]


@pytest.mark.parametrize("dotted_path", ["events.outbox.no_such_writer", "no_such_module.write", "events.outbox.MAX_EVENT_BYTES"])
def test_a_wrong_outbox_writer_stops_the_process_at_start_naming_the_setting(dotted_path):
    from django.core.exceptions import ImproperlyConfigured

    from events.apps import check_outbox_writer

    with pytest.raises(ImproperlyConfigured, match="OUTBOX_WRITER="):
        check_outbox_writer(dotted_path)


def test_every_writer_the_project_names_resolves_at_start():
    from events.apps import check_outbox_writer

    for dotted_path in ("events.outbox.write_rows", "bench.outbox_writers.discard", "bench.outbox_writers.produce_and_flush"):
        check_outbox_writer(dotted_path)
