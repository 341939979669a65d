"""Celery tasks of the reminder pipeline: the e-mail sender, and periodic housekeeping (scheduled
by django-celery-beat)."""

from datetime import timedelta

from celery import shared_task

from notifications import mail
from notifications.scheduler import fire_due_reminders

# The scheduler fires on the second; a reminder this late means no scheduler is running.
STUCK_AFTER = timedelta(minutes=1)


@shared_task(name="notifications.fire_stuck_reminders")
def fire_stuck_reminders():
    """Fire reminders stuck past their time, e.g. while every scheduler is down. Exactly-once
    still holds: rows are claimed with SKIP LOCKED and marked fired with their reminder.due."""
    return fire_due_reminders(overdue_by=STUCK_AFTER)


@shared_task(name="notifications.send_email")
def send_email_task(email_id):
    """Send one queued e-mail (enqueued after the commit that queued it, and for each retry)."""
    email = mail.send_email(email_id)
    return email.status if email is not None else None


@shared_task(name="notifications.send_pending_emails")
def send_pending_emails():
    """The e-mail sweep: retries and lost enqueues are sent, abandoned sends are failed."""
    abandoned, tried = mail.sweep()
    return {"abandoned": abandoned, "tried": tried}
