"""Delivering reminders: the in-app notification, its push to open clients, and the e-mail."""

from zoneinfo import ZoneInfo

from django.db import transaction

from events.schemas import utc_timestamp
from notifications.mail import queue_email
from notifications.models import Notification, OutgoingEmail
from tasks.realtime.groups import push_to_user


def notification_payload(notification):
    """The notification as the API and the WebSocket show it (CONTRACT.md sections 2 and 3)."""
    return {
        "id": notification.id,
        "task_id": str(notification.task_id),
        "title": notification.title,
        "body": notification.body,
        "created_at": utc_timestamp(notification.created_at),
        "read": notification.read,
        "email_status": notification.email_status,
    }


def reminder_body(title, due_at, timezone_name):
    """The notification's text, with the due time on the owner's clock."""
    if due_at is None:
        return f"Reminder: {title}"
    local = due_at.astimezone(ZoneInfo(timezone_name))
    return f"Reminder: {title} is due at {local:%Y-%m-%d %H:%M} ({timezone_name})"


def deliver_reminder(*, user, reminder_id, task_id, title, due_at):
    """Create the reminder's notification once, queue its e-mail, push it after commit.

    Runs inside the consumer's transaction, which nothing here can fail: the e-mail is only a
    row (``notifications.mail``) sent after commit, so an SMTP outage, a slow server or a
    failing sibling in the same batch never costs the in-app notification nor sends twice.
    """
    notification, created = Notification.objects.get_or_create(
        reminder_id=reminder_id,
        defaults={"user": user, "task_id": task_id, "title": title, "body": reminder_body(title, due_at, user.timezone)},
    )
    if not created:
        return notification
    if user.email:
        queue_email(
            user=user,
            kind=OutgoingEmail.Kind.REMINDER,
            notification=notification,
            subject=f"Reminder: {title}",
            body=notification.body,
            status=OutgoingEmail.Status.PENDING if user.email_confirmed_at else OutgoingEmail.Status.UNCONFIRMED,
        )
    message = {"event_type": "notification.created", "data": notification_payload(notification)}
    transaction.on_commit(lambda: push_to_user(user.id, message))
    return notification


def mark_read(notification):
    if not notification.read:
        notification.read = True
        notification.save(update_fields=["read"])
    return notification
