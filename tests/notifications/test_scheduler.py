"""The reminder scheduler fires each reminder once, on time, and honours cancellations; it keeps
only reminders that the sync log shows a task of their user to have had pending.

The reminder events are the real ones: the task services emit them (through the outbox, beside
the sync-log row of the change), and the tests hand them to the scheduler's handlers as its
consumer would: every test runs twice, once with the events handed over one by one
(on_schedule_change) and once as one batch (on_schedule_changes), since the consumer uses both.
"""

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from events.models import OutboxEvent
from events.schemas import ForgedEvent, InvalidEvent, make_event
from notifications.models import ScheduledReminder
from notifications.scheduler import ReminderClock, fire_due_reminders, on_schedule_change, on_schedule_changes
from notifications.tasks import fire_stuck_reminders
from tasks.events import EventContext, reminder_id
from tasks.models import Task, User
from tasks.services import task_complete, task_create, task_update
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="corr-1")


@pytest.fixture(autouse=True)
def many_reminders_allowed(settings):
    settings.REMINDERS_PER_USER_PER_HOUR = 10_000  # some tests schedule hundreds for one user


def one_by_one(events):
    for event in events:
        on_schedule_change(event)


HANDLERS = {"one by one": one_by_one, "as a batch": on_schedule_changes}
handle_all = one_by_one  # the handler of the test running, set by the fixture below


@pytest.fixture(autouse=True, params=list(HANDLERS))
def schedule_handler(request, monkeypatch):
    monkeypatch.setitem(globals(), "handle_all", HANDLERS[request.param])


def owner(username="owner"):
    return User.objects.get_or_create(username=username)[0]


def through_scheduler(change, since_id=None):
    """Run ``change`` (a task service call) and hand the reminder events it emitted (or, with
    ``since_id``, every one emitted after that outbox row) to the scheduler's handler, in order, in
    one transaction as its consumer would; returns them."""
    last = since_id if since_id is not None else OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    change()
    rows = OutboxEvent.objects.filter(id__gt=last, event_type__startswith="reminder.").order_by("id")
    events = [json.loads(payload) for payload in rows.values_list("payload", flat=True)]
    with transaction.atomic():
        handle_all(events)
    return events


def schedule(remind_at, *, user=None):
    """A new task of ``user`` reminding at ``remind_at``, due an hour later; its reminder.scheduled, handled."""
    due = remind_at + timedelta(hours=1)
    [scheduled] = through_scheduler(
        lambda: task_create(user=user or owner(), context=API, title="Water the plants", due_date=due, remind_at=remind_at)
    )
    return scheduled


def task_of(event):
    return Task.objects.get(pk=event["data"]["task_id"])


def cancel(scheduled):
    """Complete the reminder's task: its reminder.cancelled, handled."""
    [cancelled] = through_scheduler(lambda: task_complete(task=task_of(scheduled), context=API))
    return cancelled


def handle(event):
    with transaction.atomic():
        handle_all([event])


def status(event):
    return ScheduledReminder.objects.get(pk=event["data"]["reminder_id"]).status


def due_events():
    return list(OutboxEvent.objects.filter(event_type="reminder.due").order_by("id"))


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
    remind_at = timezone.now() + timedelta(seconds=0.5)
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
    task = task_of(event)
    # A new due date under the same remind_at cancels and schedules the same reminder id again.
    moved = through_scheduler(lambda: task_update(task=task, context=API, due_date=task.due_date + timedelta(days=1)))
    assert [e["event_type"] for e in moved] == ["reminder.cancelled", "reminder.scheduled"]
    assert {e["data"]["reminder_id"] for e in moved} == {event["data"]["reminder_id"]}
    cancel(event)
    assert status(event) == "fired"
    assert fire_due_reminders() == 0 and len(due_events()) == 1


def test_a_reminder_moved_to_another_time_fires_at_its_new_time_only():
    event = schedule(timezone.now() + timedelta(hours=1))
    task = task_of(event)
    moved_to = timezone.now() - timedelta(seconds=1)
    cancelled, scheduled = through_scheduler(lambda: task_update(task=task, context=API, remind_at=moved_to))
    assert cancelled["data"]["reminder_id"] == event["data"]["reminder_id"]
    assert fire_due_reminders() == 1
    assert (status(event), status(scheduled)) == ("cancelled", "fired")


def test_a_due_date_moved_under_the_reminder_keeps_it_pending_with_the_new_due_date():
    event = schedule(timezone.now() + timedelta(hours=1))
    task = task_of(event)
    new_due = task.due_date + timedelta(days=2)
    through_scheduler(lambda: task_update(task=task, context=API, due_date=new_due))
    reminder = ScheduledReminder.objects.get(pk=event["data"]["reminder_id"])
    assert (reminder.status, reminder.due_at) == ("pending", new_due)


def test_the_celery_safety_net_fires_only_reminders_stuck_past_their_time():
    stuck = schedule(timezone.now() - timedelta(minutes=2))
    just_due = schedule(timezone.now() - timedelta(seconds=10))
    assert fire_stuck_reminders() == 1
    assert (status(stuck), status(just_due)) == ("fired", "pending")


# -- forgeries: what the sync log does not vouch for is a ForgedEvent, and schedules nothing ------


def real_reminder():
    """A pending reminder of a real task, in an hour; its reminder.scheduled, handled."""
    return schedule(timezone.now() + timedelta(hours=1))


def forged(real, event_type="reminder.scheduled", **changes):
    return make_event(event_type, {**real["data"], **changes}, source="todo-api", correlation_id="forged")


def assert_forged(event):
    before = list(ScheduledReminder.objects.order_by("pk").values())
    with pytest.raises(ForgedEvent):
        handle(event)
    assert list(ScheduledReminder.objects.order_by("pk").values()) == before


def test_a_reminder_scheduled_for_another_user_is_forged():
    assert_forged(forged(real_reminder(), user_id=str(owner("intruder").id)))


def test_a_reminder_scheduled_with_a_title_the_task_never_had_is_forged():
    assert_forged(forged(real_reminder(), title="Your parcel is held: pay the fee at evil.example"))


def test_a_reminder_scheduled_for_a_task_the_log_never_had_is_forged():
    real = real_reminder()
    task_id = str(uuid.uuid4())
    assert_forged(forged(real, task_id=task_id, reminder_id=reminder_id(task_id, task_of(real).remind_at)))


def test_a_reminder_scheduled_at_a_time_or_due_date_the_task_never_had_is_forged():
    real = real_reminder()
    other = timezone.now() + timedelta(minutes=5)
    assert_forged(forged(real, remind_at=other.isoformat(), reminder_id=reminder_id(real["data"]["task_id"], other)))
    assert_forged(forged(real, due_at=(other + timedelta(days=3)).isoformat()))


def test_a_reminder_scheduled_under_another_reminder_id_is_forged():
    assert_forged(forged(real_reminder(), reminder_id=str(uuid.uuid4())))


def test_a_reminder_event_whose_task_id_is_no_uuid_is_invalid_not_a_database_error():
    with pytest.raises(InvalidEvent, match="task_id"):
        handle(forged(real_reminder(), task_id="not-a-uuid"))


def cancellation_of(real):
    """The genuine reminder.cancelled of ``real``'s reminder (its task completed), not handed over yet."""
    task_complete(task=task_of(real), context=API)
    return json.loads(OutboxEvent.objects.get(event_type="reminder.cancelled", key=real["data"]["task_id"]).payload)


def test_a_genuine_cancellation_is_vouched_for_by_the_state_it_was_emitted_with():
    real = real_reminder()
    handle(cancellation_of(real))
    assert status(real) == "cancelled"


def test_a_cancellation_of_a_reminder_that_every_logged_state_has_pending_is_forged():
    real = real_reminder()
    assert_forged(forged(real, "reminder.cancelled"))
    assert status(real) == "pending"


def test_a_cancellation_for_another_user_is_forged():
    real = real_reminder()
    assert_forged(forged(cancellation_of(real), "reminder.cancelled", user_id=str(owner("intruder").id)))


# -- a batch: the events' effects in order, in a few statements -----------------------------------


def test_a_reminder_scheduled_then_cancelled_in_one_batch_ends_cancelled_and_never_fires():
    remind_at = timezone.now() - timedelta(seconds=1)
    task = task_create(user=owner(), context=API, title="Call back", due_date=remind_at + timedelta(hours=1),
                       remind_at=remind_at)
    events = through_scheduler(lambda: task_complete(task=task, context=API), since_id=0)
    assert [e["event_type"] for e in events] == ["reminder.scheduled", "reminder.cancelled"]
    assert status(events[0]) == "cancelled"
    assert fire_due_reminders() == 0


def test_a_batch_of_many_reminders_is_recorded_in_a_handful_of_statements(django_assert_max_num_queries):
    remind_at = timezone.now() + timedelta(hours=1)
    user = owner()
    last = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for n in range(100):
        task_create(user=user, context=API, title=f"Task {n}", due_date=remind_at + timedelta(hours=1), remind_at=remind_at)
    rows = OutboxEvent.objects.filter(id__gt=last, event_type="reminder.scheduled").order_by("id")
    events = [json.loads(payload) for payload in rows.values_list("payload", flat=True)]
    with django_assert_max_num_queries(6), transaction.atomic():  # BEGIN, the log, the rows, INSERT, COMMIT
        on_schedule_changes(events)
    assert ScheduledReminder.objects.filter(status="pending").count() == 100
