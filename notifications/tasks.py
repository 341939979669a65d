"""Periodic housekeeping of the reminder pipeline (scheduled by django-celery-beat)."""

from datetime import timedelta

from celery import shared_task

from notifications.scheduler import fire_due_reminders

# The scheduler fires on the second; a reminder this late means no scheduler is running.
STUCK_AFTER = timedelta(minutes=1)


@shared_task(name="notifications.fire_stuck_reminders")
def fire_stuck_reminders():
    """Fire reminders stuck past their time, e.g. while every scheduler is down. Exactly-once
    still holds: rows are claimed with SKIP LOCKED and marked fired with their reminder.due."""
    return fire_due_reminders(overdue_by=STUCK_AFTER)
