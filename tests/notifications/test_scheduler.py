"""The reminder scheduler fires each reminder once, on time, and honours cancellations."""

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from events.models import OutboxEvent
from events.schemas import make_event, utc_timestamp
from notifications.models import ScheduledReminder
from notifications.tasks import fire_stuck_reminders
from notifications.scheduler import ReminderClock, fire_due_reminders, record_cancelled, record_scheduled

pytestmark = pytest.mark.django_db(transaction=True)


def reminder_event(event_type, *, remind_at, reminder_id=None, task_id=None):
    task_id = task_id or str(uuid.uuid4())
    data = {
        "reminder_id": str(reminder_id or uuid.uuid4()),
        "task_id": task_id,
        "title": "Water the plants",
        "due_at": utc_timestamp(remind_at + timedelta(hours=1)),
        "remind_at": utc_timestamp(remind_at),
        "user_id": "7",
    }
    return make_event(event_type, data, source="todo-api", correlation_id="corr-1")


def schedule(remind_at, **ids):
    event = reminder_event("reminder.scheduled", remind_at=remind_at, **ids)
    with transaction.atomic():  # handlers run in the consumer runtime's transaction
        record_scheduled(event)
    return event


def cancel(scheduled):
    data = scheduled["data"]
    event = reminder_event("reminder.cancelled", remind_at=timezone.now(), reminder_id=data["reminder_id"], task_id=data["task_id"])
    with transaction.atomic():
        record_cancelled(event)


def due_events():
    return list(OutboxEvent.objects.filter(event_type="reminder.due").order_by("id"))


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.02)
    return condition()


@pytest.fixture
def running_clock():
    """A ReminderClock running in its own thread, as in run_scheduler; stopped after the test."""
    clocks = []

    def start():
        clock, stop = ReminderClock(), threading.Event()
        thread = threading.Thread(target=clock.run, args=(stop,), daemon=True)
        thread.start()
        clocks.append((stop, thread))
        return clock

    yield start
    for stop, thread in clocks:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_reminder_fires_once_within_a_second_of_its_time(running_clock):
    clock = running_clock()
    remind_at = timezone.now() + timedelta(seconds=1.5)
    event = schedule(remind_at)
    clock.reminder_scheduled(remind_at)

    fired = wait_for(due_events, timeout=10)
    assert len(fired) == 1
    assert fired[0].key == event["data"]["task_id"]
    reminder = ScheduledReminder.objects.get(pk=event["data"]["reminder_id"])
    assert reminder.status == "fired"
    assert timedelta(0) <= reminder.fired_at - remind_at < timedelta(seconds=1)
    assert fire_due_reminders() == 0 and len(due_events()) == 1


def test_the_due_event_carries_the_reminder_and_the_scheduling_correlation_id(running_clock):
    event = schedule(timezone.now() - timedelta(seconds=1))
    running_clock()
    fired = wait_for(due_events, timeout=10)
    due = json.loads(fired[0].payload)
    assert due["data"] == event["data"]
    assert due["metadata"] == {"source": "reminder-scheduler", "correlation_id": "corr-1"}


def test_a_nearer_reminder_wakes_a_clock_sleeping_until_a_later_one(running_clock):
    schedule(timezone.now() + timedelta(minutes=10))
    clock = running_clock()
    assert wait_for(lambda: clock._next_due is not None, timeout=5)
    remind_at = timezone.now() + timedelta(seconds=0.5)
    schedule(remind_at)
    clock.reminder_scheduled(remind_at)
    assert len(wait_for(due_events, timeout=5)) == 1


def test_what_came_due_while_no_scheduler_ran_fires_at_start(running_clock):
    for minutes in (1, 5, 60):
        schedule(timezone.now() - timedelta(minutes=minutes))
    running_clock()
    assert len(wait_for(lambda: len(due_events()) == 3 and due_events(), timeout=10)) == 3


def test_two_schedulers_side_by_side_fire_every_reminder_once(running_clock):
    remind_at = timezone.now() + timedelta(seconds=1)
    events = [schedule(remind_at) for _ in range(300)]
    for clock in (running_clock(), running_clock()):
        clock.reminder_scheduled(remind_at)

    wait_for(lambda: len(due_events()) >= 300, timeout=20)
    fired_ids = [due.key for due in due_events()]
    assert sorted(fired_ids) == sorted(event["data"]["task_id"] for event in events)


def test_a_cancellation_before_the_time_wins():
    remind_at = timezone.now() + timedelta(seconds=0.2)
    event = schedule(remind_at)
    cancel(event)
    assert wait_for(lambda: timezone.now() > remind_at, timeout=5)
    assert fire_due_reminders() == 0
    assert ScheduledReminder.objects.get(pk=event["data"]["reminder_id"]).status == "cancelled"


def test_a_cancellation_after_the_reminder_fired_changes_nothing():
    event = schedule(timezone.now() - timedelta(seconds=1))
    assert fire_due_reminders() == 1
    cancel(event)
    schedule(timezone.now() + timedelta(hours=1), reminder_id=event["data"]["reminder_id"], task_id=event["data"]["task_id"])
    assert ScheduledReminder.objects.get(pk=event["data"]["reminder_id"]).status == "fired"
    assert fire_due_reminders() == 0 and len(due_events()) == 1


def test_a_rescheduled_reminder_fires_at_its_new_time():
    event = schedule(timezone.now() + timedelta(hours=1))
    moved = timezone.now() - timedelta(seconds=1)
    schedule(moved, reminder_id=event["data"]["reminder_id"], task_id=event["data"]["task_id"])
    assert fire_due_reminders() == 1


def test_the_celery_safety_net_fires_only_reminders_stuck_past_their_time():
    stuck = schedule(timezone.now() - timedelta(minutes=2))
    just_due = schedule(timezone.now() - timedelta(seconds=10))
    assert fire_stuck_reminders() == 1
    statuses = dict(ScheduledReminder.objects.values_list("reminder_id", "status"))
    assert statuses[uuid.UUID(stuck["data"]["reminder_id"])] == "fired"
    assert statuses[uuid.UUID(just_due["data"]["reminder_id"])] == "pending"
