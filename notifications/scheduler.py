"""The reminder scheduler: keeps its own schedule from the reminders topic and fires it on time.

``record_scheduled`` and ``record_cancelled`` are the handlers of the ``scheduler`` consumer;
they keep ``ScheduledReminder`` rows in step with the topic. ``ReminderClock`` sleeps until the
next pending reminder is due (not a fixed poll), is woken early when a nearer one arrives, and
fires what is due with ``fire_due_reminders``: ``reminder.due`` goes into the outbox in the
same transaction that marks the row fired, and rows are claimed with ``FOR UPDATE SKIP
LOCKED``, so any number of schedulers (and the celery safety net) fire each reminder once.
"""

import logging
import threading
from datetime import datetime, timedelta

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from prometheus_client import Counter, Histogram

from events.outbox import emit_all
from events.schemas import make_event, utc_timestamp
from notifications.models import ScheduledReminder

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


def _parse_time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def record_scheduled(event):
    """Handler for ``reminder.scheduled``: add the reminder to the schedule (or revive a cancelled one)."""
    data = event["data"]
    remind_at = _parse_time(data["remind_at"])
    fields = {
        "task_id": data["task_id"],
        "user_id": data["user_id"],
        "title": data["title"],
        "due_at": _parse_time(data["due_at"]),
        "remind_at": remind_at,
        "correlation_id": event["metadata"]["correlation_id"],
    }
    reminder, created = ScheduledReminder.objects.select_for_update().get_or_create(
        reminder_id=data["reminder_id"], defaults=fields
    )
    # A reminder fires once: a fired row stays fired whatever is scheduled again under its id.
    if not created and reminder.status != Status.FIRED:
        for name, value in fields.items():
            setattr(reminder, name, value)
        reminder.status = Status.PENDING
        reminder.save()
    transaction.on_commit(lambda: clock.reminder_scheduled(remind_at))


def record_cancelled(event):
    """Handler for ``reminder.cancelled``: a pending reminder is cancelled; a fired one stays fired."""
    reminder_id = event["data"]["reminder_id"]
    updated = ScheduledReminder.objects.filter(reminder_id=reminder_id, status=Status.PENDING).update(
        status=Status.CANCELLED
    )
    if not updated and not ScheduledReminder.objects.filter(reminder_id=reminder_id).exists():
        # Cancelled before we ever saw it scheduled (a replay from a later offset): remember the
        # cancellation so that a late ``scheduled`` for it cannot revive it.
        data = event["data"]
        ScheduledReminder.objects.create(
            reminder_id=reminder_id,
            task_id=data["task_id"],
            user_id=data["user_id"],
            title=data["title"],
            due_at=_parse_time(data["due_at"]),
            remind_at=_parse_time(data["remind_at"]),
            status=Status.CANCELLED,
            correlation_id=event["metadata"]["correlation_id"],
        )


def reminder_due_data(reminder):
    return {
        "reminder_id": str(reminder.reminder_id),
        "task_id": str(reminder.task_id),
        "title": reminder.title,
        "due_at": utc_timestamp(reminder.due_at) if reminder.due_at else None,
        "remind_at": utc_timestamp(reminder.remind_at),
        "user_id": reminder.user_id,
    }


def fire_due_reminders(overdue_by=timedelta(0), batch_size=FIRE_BATCH_SIZE):
    """Emit ``reminder.due`` for every pending reminder due ``overdue_by`` ago or earlier.

    Returns how many fired. Safe to call from any number of processes at once.
    """
    fired = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = list(
                ScheduledReminder.objects.select_for_update(skip_locked=True)
                .filter(status=Status.PENDING, remind_at__lte=now - overdue_by)
                .order_by("remind_at")[:batch_size]
            )
            emit_all(
                (
                    make_event("reminder.due", reminder_due_data(r), source=SOURCE, correlation_id=r.correlation_id),
                    str(r.task_id),
                )
                for r in due
            )
            fired_at = timezone.now()
            ScheduledReminder.objects.filter(pk__in=[reminder.pk for reminder in due]).update(
                status=Status.FIRED, fired_at=fired_at
            )
        for reminder in due:
            reminder_lateness.observe((fired_at - reminder.remind_at).total_seconds())
        reminders_fired.inc(len(due))
        fired += len(due)
        if len(due) < batch_size:
            return fired


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
