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


@shared_task(name="notifications.send_emails")
def send_emails_task(email_ids):
    """Send queued e-mails one after another (enqueued after the commit that queued them, and for
    each retry); each is claimed on its own, so a duplicate message sends nothing twice, and what a
    dying worker leaves unsent the sweep sends."""
    return [email.status if email is not None else None for email in map(mail.send_email, email_ids)]


@shared_task(name="notifications.send_pending_emails")
def send_pending_emails():
    """The e-mail sweep: retries and lost enqueues are sent, abandoned sends are failed."""
    abandoned, tried = mail.sweep()
    return {"abandoned": abandoned, "tried": tried}
