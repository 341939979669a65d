"""The reminder scheduler: keeps its own schedule from the reminders topic and fires it on time.

``record_scheduled`` and ``record_cancelled`` are the handlers of the ``scheduler`` consumer;
they keep ``ScheduledReminder`` rows in step with the topic. Its batch handler,
``on_schedule_changes``, has the same effects for a fetched batch in a few statements (a burst
of reminders is recorded at hundreds a second, not tens). ``ReminderClock`` sleeps until the
next pending reminder is due (not a fixed poll), is woken early when a nearer one arrives, and
fires what is due with ``fire_due_reminders``: ``reminder.due`` goes into the outbox in the
same transaction that marks the row fired, and rows are claimed with ``FOR UPDATE SKIP
LOCKED``, so any number of schedulers (and the celery safety net) fire each reminder once.

What the handlers trust: nothing the event says that the sync log (tasks.sync) does not vouch
for, since anyone who can write to the reminders topic could schedule a reminder for any user with
any title, and the notification would show it. Every legitimate reminder.scheduled is emitted in
the same transaction as a sync event of its task whose task object has exactly that reminder
pending (tasks/services.py create, update, reopen; the recurring-task service creates through
them), and its reminder_id is tasks.events.reminder_id(task_id, remind_at). ``record_scheduled``
therefore wants a logged state of the task, not deleted nor completed, with the event's owner,
title, due date and remind_at, and the matching reminder_id; anything else is a ForgedEvent. The
residual risk: a genuine reminder.scheduled sent again revives that reminder if it was cancelled
since (its task moved away from that time): its owner is reminded of their own task, with their
own text, once more. Nothing reaches another account, and no text but the owner's own.

``record_cancelled`` explains what the log vouches for in a cancellation. A scheduler lagging
beyond the sync log's retention has its oldest events dead-lettered as forged; tasks.sync says
what the dead letters say and when they can be replayed.
"""

import logging
import threading
from datetime import timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from prometheus_client import Counter, Histogram

from events.bulk import bulk_insert
from events.outbox import emit_all
from events.schemas import ForgedEvent, InvalidEvent, event_uuid, make_event, parse_timestamp
from notifications.models import ScheduledReminder
from tasks.events import reminder_data
from tasks.events import reminder_id as reminder_id_of
from tasks.sync import task_states, task_states_of, unvouched

logger = logging.getLogger(__name__)

SOURCE = "reminder-scheduler"
FIRE_BATCH_SIZE = 500
# Even with nothing pending the clock looks again this often: a safety net, not the mechanism.
MAX_SLEEP_SECONDS = 30.0
DATABASE_RETRY_SECONDS = 1.0

reminders_fired = Counter("reminders_fired_total", "Reminders that came due and were emitted as reminder.due")
reminder_lateness = Histogram(
    "reminder_lateness_seconds",
    "How long after remind_at a reminder was fired",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300, 3600),
)

Status = ScheduledReminder.Status


# What a reminder event claims about its task's state, and the task-object fields that say it.
REMINDER_CLAIM = ("user_id", "title", "due_at", "remind_at")
STATE_FIELDS = ("user_id", "title", "due_date", "remind_at", "completed")
# The row fields that a reminder event sets (_schedule_fields).
SCHEDULE_FIELDS = ("task_id", "user_id", "title", "due_at", "remind_at", "correlation_id")


def _pending_in(change_type, task):
    """The reminder that a logged task state has pending, as a reminder event claims it, or None:
    the same rule as tasks.services._pending_reminder, read from the log instead of the row."""
    if change_type == "deleted" or task["completed"] or task["remind_at"] is None:
        return None
    return {"user_id": task["user_id"], "title": task["title"], "due_at": task["due_date"], "remind_at": task["remind_at"]}


def _checked_task_id(event):
    """The task of a reminder event, after checking that its reminder_id is that task's and remind_at's."""
    data = event["data"]
    task_id = event_uuid(data["task_id"], "task_id")
    try:
        remind_at = parse_timestamp(data["remind_at"])
    except ValueError:
        raise InvalidEvent(f"remind_at {data['remind_at']!r} is not a timestamp") from None
    if str(event_uuid(data["reminder_id"], "reminder_id")) != reminder_id_of(task_id, remind_at):
        raise ForgedEvent(f"reminder {data['reminder_id']} is not the reminder of task {task_id} at {data['remind_at']}")
    return task_id


def _logged_reminders(event, states):
    """The reminder each of ``states`` (the logged states of the event's task) owned by the event's
    user had pending (None for a state with none). ForgedEvent when the log has no state of that
    task owned by that user."""
    data = event["data"]
    if not states:
        raise unvouched(f"{event['event_type']}: task {data['task_id']} is not in the sync log", event)
    owned = [_pending_in(change_type, task) for change_type, task in states if task["user_id"] == data["user_id"]]
    if not owned:
        raise ForgedEvent(f"{event['event_type']}: task {data['task_id']} does not belong to user {data['user_id']}")
    return owned


def _check_scheduled(event, states):
    """ForgedEvent unless a logged state of the task has exactly this reminder pending."""
    data = event["data"]
    claim = {name: data[name] for name in REMINDER_CLAIM}
    if claim not in _logged_reminders(event, states):
        raise ForgedEvent(
            f"reminder.scheduled {data['reminder_id']}: no logged state of task {data['task_id']} has this "
            "reminder pending (its title, due date or time, or the task's state, differ)"
        )


def _schedule_fields(event):
    """The row fields a reminder event sets (everything but the id and the status)."""
    data = event["data"]
    return {
        "task_id": data["task_id"],
        "user_id": data["user_id"],
        "title": data["title"],
        "due_at": parse_timestamp(data["due_at"]),
        "remind_at": parse_timestamp(data["remind_at"]),
        "correlation_id": event["metadata"]["correlation_id"],
    }


def record_scheduled(event):
    """Handler for ``reminder.scheduled``: add the reminder to the schedule (or revive a cancelled one),
    when a logged state of its task has exactly this reminder pending (see the module's docstring)."""
    _check_scheduled(event, task_states(_checked_task_id(event), STATE_FIELDS))
    fields = _schedule_fields(event)
    reminder, created = ScheduledReminder.objects.select_for_update().get_or_create(
        reminder_id=event["data"]["reminder_id"], defaults=fields
    )
    # A reminder fires once: a fired row stays fired whatever is scheduled again under its id.
    if not created and reminder.status != Status.FIRED:
        for name, value in fields.items():
            setattr(reminder, name, value)
        reminder.status = Status.PENDING
        reminder.save()
    transaction.on_commit(lambda: clock.reminder_scheduled(fields["remind_at"]))


def record_cancelled(event):
    """Handler for ``reminder.cancelled``: a pending reminder is cancelled; a fired one stays fired.

    A legitimate cancellation is emitted with a change after which the task no longer has that
    reminder pending (tasks/services.py): it was deleted or completed, or its remind_at moved or
    went. The log vouches for a cancellation when it holds such a state of the task, owned by the
    event's user; then the reminder is cancelled. The one other legitimate cancellation is a due
    date that moved under an unchanged remind_at: the same change then schedules the reminder
    again under the same reminder_id with the new due date, right after this event in the same
    partition, so cancelling it changes nothing lasting. That one is recognised (the log holds the
    reminder pending at another due date than the event's; the state at the old one may be purged
    already) and changes nothing, so a copy of it cannot cancel anything. Anything else (every
    logged state has exactly this reminder pending) is a ForgedEvent.

    The residual risk: someone who can write to the topic, and knows a task's id, its owner's id
    and a remind_at it has pending, can cancel that reminder if some logged state of the task
    lacked it (it was set after creation, or moved back to that time). Its owner then misses that
    one reminder; nothing is written into any account, and no text of theirs is shown to anyone.
    Demanding the state that immediately followed one with the reminder pending would narrow it,
    but the log purges by age, and a legitimate cancellation whose predecessor was purged would
    then leave the reminder to fire.
    """
    if not _cancels(event, task_states(_checked_task_id(event), STATE_FIELDS)):
        return
    reminder_id = event["data"]["reminder_id"]
    updated = ScheduledReminder.objects.filter(reminder_id=reminder_id, status=Status.PENDING).update(
        status=Status.CANCELLED
    )
    if not updated and not ScheduledReminder.objects.filter(reminder_id=reminder_id).exists():
        # Cancelled before we ever saw it scheduled (a replay from a later offset): remember the
        # cancellation so that a late ``scheduled`` for it cannot revive it.
        ScheduledReminder.objects.create(reminder_id=reminder_id, status=Status.CANCELLED, **_schedule_fields(event))


def _cancels(event, states):
    """Whether a reminder.cancelled cancels its reminder, as record_cancelled explains: True when
    the log vouches for it, False for a moved due date, ForgedEvent otherwise."""
    data = event["data"]
    logged = _logged_reminders(event, states)
    gone = any(pending is None or pending["remind_at"] != data["remind_at"] for pending in logged)
    if gone:
        return True
    if all(pending["due_at"] == data["due_at"] for pending in logged):
        raise ForgedEvent(
            f"reminder.cancelled {data['reminder_id']}: every logged state of task {data['task_id']} "
            "still has this reminder pending"
        )
    return False  # a due date moved: the reminder.scheduled that follows updates the row


# What a row's reminder.due is made of.
FIRED_FIELDS = ("reminder_id", *SCHEDULE_FIELDS)


def reminder_due_data(reminder):
    """The data of a scheduled row's ``reminder.due`` (a row, or a named row of FIRED_FIELDS): the
    reminder exactly as it was scheduled."""
    return reminder_data(
        reminder_id=reminder.reminder_id, task_id=reminder.task_id, title=reminder.title, due_at=reminder.due_at,
        remind_at=reminder.remind_at, user_id=reminder.user_id,
    )


def fire_due_reminders(overdue_by=timedelta(0), batch_size=FIRE_BATCH_SIZE):
    """Emit ``reminder.due`` for every pending reminder due ``overdue_by`` ago or earlier.

    Returns how many fired. Safe to call from any number of processes at once.
    """
    fired = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            # Named rows of what reminder.due is made of, not model instances: a burst reads thousands.
            due = list(
                ScheduledReminder.objects.select_for_update(skip_locked=True)
                .filter(status=Status.PENDING, remind_at__lte=now - overdue_by)
                .order_by("remind_at")
                .values_list(*FIRED_FIELDS, named=True)[:batch_size]
            )
            emit_all(
                (
                    make_event("reminder.due", reminder_due_data(r), source=SOURCE, correlation_id=r.correlation_id),
                    str(r.task_id),
                )
                for r in due
            )
            fired_at = timezone.now()
            mark_fired([reminder.reminder_id for reminder in due], fired_at)
        for reminder in due:
            reminder_lateness.observe((fired_at - reminder.remind_at).total_seconds())
        reminders_fired.inc(len(due))
        fired += len(due)
        if len(due) < batch_size:
            return fired


def mark_fired(reminder_ids, fired_at):
    """Mark the rows of ``reminder_ids`` fired, their ids in ONE array parameter: ``pk__in`` would
    send a placeholder per id, and psycopg parses such a query afresh each time (most of this
    update's cost in the profile of a burst)."""
    table = ScheduledReminder._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, fired_at = %s WHERE reminder_id = ANY(%s::uuid[])",
            [Status.FIRED.value, fired_at, [str(reminder_id) for reminder_id in reminder_ids]],
        )


def next_pending_time():
    first = ScheduledReminder.objects.filter(status=Status.PENDING).order_by("remind_at").first()
    return first.remind_at if first else None


class ReminderClock:
    """Fires reminders when they come due, sleeping in between.

    ``run`` loops: fire what is due, look up the next due time, sleep until then. A handler
    that schedules a nearer reminder calls ``reminder_scheduled`` after its commit, which cuts
    the sleep short. The lock makes "look up the next time" and "is the new one nearer?"
    exclusive, so a reminder committed during the look-up can never be slept through.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._next_due = None

    def reminder_scheduled(self, remind_at):
        with self._lock:
            if self._next_due is None or remind_at < self._next_due:
                self._wake.set()

    def run(self, stop):
        """Run until the ``stop`` event is set; what came due while nobody ran fires at once."""
        stop_waiter = threading.Thread(target=lambda: (stop.wait(), self._wake.set()), daemon=True)
        stop_waiter.start()
        while not stop.is_set():
            try:
                next_due = self._fire_and_look_ahead()
            except DatabaseError:
                # PostgreSQL restarting: drop the broken connection and try again shortly.
                logger.exception("reminder clock: database error, retrying in %.0f s", DATABASE_RETRY_SECONDS)
                connection.close()
                stop.wait(DATABASE_RETRY_SECONDS)
                continue
            sleep = MAX_SLEEP_SECONDS
            if next_due is not None:
                sleep = min(max((next_due - timezone.now()).total_seconds(), 0.0), MAX_SLEEP_SECONDS)
            # A stop's wake-up that came before the look-ahead's clear() is gone; its stop is not.
            if not stop.is_set():
                self._wake.wait(sleep)
        connection.close()

    def _fire_and_look_ahead(self):
        fired = fire_due_reminders()
        if fired:
            logger.info("fired %d reminder(s)", fired)
        with self._lock:
            self._wake.clear()
            self._next_due = next_pending_time()
            return self._next_due


clock = ReminderClock()


SCHEDULE_CHANGES = {"reminder.scheduled": record_scheduled, "reminder.cancelled": record_cancelled}


def on_schedule_change(event):
    """Handler of the ``scheduler`` consumer (group reminder-scheduler)."""
    SCHEDULE_CHANGES[event["event_type"]](event)


def on_schedule_changes(events):
    """Batch handler of the ``scheduler`` consumer: the effects of ``on_schedule_change`` on each
    event in order, in a few statements for the whole batch (one read of the log, one locking
    read of the rows, one insert, one update), not five per event.

    The events are applied in order to the rows in memory (a reminder scheduled and cancelled in
    one batch ends cancelled, as one by one), then written. Any check failing fails the batch,
    which the consumer then runs event by event (record_scheduled, record_cancelled)."""
    task_ids = [_checked_task_id(event) for event in events]
    states = task_states_of(set(task_ids), STATE_FIELDS)
    reminder_ids = [event_uuid(event["data"]["reminder_id"], "reminder_id") for event in events]
    rows = ScheduledReminder.objects.select_for_update().in_bulk(set(reminder_ids))
    created, changed, earliest = {}, {}, None
    for event, task_id, reminder_id in zip(events, task_ids, reminder_ids):
        task_states_logged = states.get(task_id, [])
        row = rows.get(reminder_id)
        if event["event_type"] == "reminder.scheduled":
            _check_scheduled(event, task_states_logged)
            fields = _schedule_fields(event)
            earliest = fields["remind_at"] if earliest is None else min(earliest, fields["remind_at"])
            if row is None:
                row = created[reminder_id] = rows[reminder_id] = ScheduledReminder(reminder_id=reminder_id, **fields)
            elif row.status != Status.FIRED:  # a reminder fires once
                for name, value in fields.items():
                    setattr(row, name, value)
                row.status = Status.PENDING
                changed[reminder_id] = row
        elif _cancels(event, task_states_logged):
            if row is None:  # cancelled before it was seen scheduled: remembered, see record_cancelled
                row = created[reminder_id] = rows[reminder_id] = ScheduledReminder(
                    reminder_id=reminder_id, status=Status.CANCELLED, **_schedule_fields(event)
                )
            elif row.status == Status.PENDING:
                row.status = Status.CANCELLED
                changed[reminder_id] = row
    bulk_insert(list(created.values()))
    updated_at = timezone.now()
    changed = [row for reminder_id, row in changed.items() if reminder_id not in created]
    for row in changed:
        row.updated_at = updated_at  # bulk_update leaves auto_now fields as they are
    ScheduledReminder.objects.bulk_update(changed, [*SCHEDULE_FIELDS, "status", "updated_at"])
    if earliest is not None:
        transaction.on_commit(lambda: clock.reminder_scheduled(earliest))
