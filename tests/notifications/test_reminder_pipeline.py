"""Reminders end to end, as separate processes on the real broker: relay_outbox, run_scheduler and
run_consumer notifications, and a celery worker sending the e-mails. A reminder fires within a second
of its time, once, is delivered in-app and by e-mail, and completing, deleting or moving the task
first cancels or moves it."""

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification, ScheduledReminder
from tasks.events import EventContext
from tasks.services import task_complete, task_create, task_delete, task_update
from testing.kafka import read_topic
from testing.waits import wait_for
from tests.notifications.conftest import confirmed_user

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="pipeline")


@pytest.fixture
def owner():
    return confirmed_user("ines")


def reminder_task(owner, title, remind_in):
    remind_at = timezone.now() + remind_in
    return task_create(user=owner, context=API, title=title, due_date=remind_at + timedelta(hours=1), remind_at=remind_at)


def start_pipeline(workers, celery_worker, smtp_port, schedulers=1):
    workers(["relay_outbox"])
    for _ in range(schedulers):
        workers(["run_scheduler"])
    workers(["run_consumer", "notifications"])
    celery_worker(EMAIL_PORT=smtp_port)


def wait_until_running(owner):
    """A reminder already due when the workers start goes through once every worker is up."""
    warm_up = reminder_task(owner, "warm-up", timedelta(0))
    assert wait_for(lambda: Notification.objects.filter(task_id=warm_up.id).exists(), timeout=120)


def due_events(count):
    """The reminder.due events on the reminders topic, once there are at least ``count``."""

    def due(messages):
        return [event for event in (json.loads(m["value"]) for m in messages) if event["event_type"] == "reminder.due"]

    return due(read_topic("reminders", until=lambda messages: len(due(messages)) >= count))


def test_a_reminder_fires_on_time_once_and_reaches_the_app_and_the_mailbox(workers, celery_worker, smtp, owner, isolated_kafka):
    start_pipeline(workers, celery_worker, smtp.port)
    wait_until_running(owner)

    task = reminder_task(owner, "Pay the rent", timedelta(seconds=3))
    notification = wait_for(lambda: Notification.objects.filter(task_id=task.id).first(), timeout=30)

    assert notification is not None and notification.user == owner and "Pay the rent" in notification.body
    due = [event for event in due_events(2) if event["data"]["task_id"] == str(task.id)]
    assert len(due) == 1
    fired = ScheduledReminder.objects.get(task_id=task.id)
    assert timedelta(0) <= fired.fired_at - task.remind_at < timedelta(seconds=1)
    assert due[0]["metadata"] == {"source": "reminder-scheduler", "correlation_id": "pipeline"}
    mails = smtp.wait_for(2, timeout=60)
    assert [mail["To"] for mail in mails] == ["ines@example.org"] * 2
    assert any("Pay the rent" in mail["Subject"] for mail in mails)


def test_completing_deleting_or_moving_the_task_first_cancels_or_moves_its_reminder(workers, celery_worker, smtp, owner, isolated_kafka):
    start_pipeline(workers, celery_worker, smtp.port)
    wait_until_running(owner)

    completed = reminder_task(owner, "completed first", timedelta(seconds=4))
    deleted = reminder_task(owner, "deleted first", timedelta(seconds=4))
    moved = reminder_task(owner, "moved", timedelta(seconds=4))
    task_complete(task=completed, context=API)
    task_delete(task=deleted, context=API)
    new_time = timezone.now() + timedelta(seconds=6)
    task_update(task=moved, context=API, remind_at=new_time)
    control = reminder_task(owner, "control", timedelta(seconds=8))

    # By the time the control reminder is delivered, the others' original times have long passed.
    assert wait_for(lambda: Notification.objects.filter(task_id=control.id).exists(), timeout=60)
    assert Notification.objects.filter(task_id=moved.id).count() == 1
    assert not Notification.objects.filter(task_id__in=[completed.id, deleted.id]).exists()
    moved_reminder = ScheduledReminder.objects.get(task_id=moved.id, status="fired")
    assert moved_reminder.remind_at == new_time and moved_reminder.fired_at >= new_time
    assert set(ScheduledReminder.objects.filter(task_id__in=[completed.id, deleted.id]).values_list("status", flat=True)) == {"cancelled"}


def test_two_schedulers_running_together_fire_each_reminder_once(workers, celery_worker, smtp, owner, isolated_kafka):
    start_pipeline(workers, celery_worker, smtp.port, schedulers=2)
    wait_until_running(owner)

    tasks = [reminder_task(owner, f"burst {n}", timedelta(seconds=3)) for n in range(40)]
    assert wait_for(lambda: Notification.objects.filter(title__startswith="burst").count() == 40, timeout=60)

    due = due_events(41)
    fired_per_task = Counter(event["data"]["task_id"] for event in due)
    assert all(fired_per_task[str(task.id)] == 1 for task in tasks)
    assert Notification.objects.filter(title__startswith="burst").count() == 40
