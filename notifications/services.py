"""Delivering reminders: the in-app notification, its push to open clients, and the e-mail."""

from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from events.schemas import utc_timestamp
from notifications.models import Notification
from tasks.realtime import push_to_user


def notification_payload(notification):
    """The notification as the API and the WebSocket show it (CONTRACT.md sections 2 and 3)."""
    return {
        "id": notification.id,
        "task_id": str(notification.task_id),
        "title": notification.title,
        "body": notification.body,
        "created_at": utc_timestamp(notification.created_at),
        "read": notification.read,
    }


def reminder_body(title, due_at, timezone_name):
    """The notification's text, with the due time on the owner's clock."""
    if due_at is None:
        return f"Reminder: {title}"
    local = due_at.astimezone(ZoneInfo(timezone_name))
    return f"Reminder: {title} is due at {local:%Y-%m-%d %H:%M} ({timezone_name})"


def deliver_reminder(*, user, reminder_id, task_id, title, due_at):
    """Create the reminder's notification once, e-mail it when the user has an address, push it.

    Runs inside the consumer's transaction: an e-mail failure raises, the notification rolls
    back with it, and the runtime retries the whole delivery (then dead-letters it). The push
    waits for the commit so that clients never see a notification that did not persist.
    """
    notification, created = Notification.objects.get_or_create(
        reminder_id=reminder_id,
        defaults={"user": user, "task_id": task_id, "title": title, "body": reminder_body(title, due_at, user.timezone)},
    )
    if not created:
        return notification
    if user.email:
        send_mail(
            subject=f"Reminder: {title}",
            message=notification.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[user.email],
        )
        notification.emailed_at = timezone.now()
        notification.save(update_fields=["emailed_at"])
    message = {"event_type": "notification.created", "data": notification_payload(notification)}
    transaction.on_commit(lambda: push_to_user(user.id, message))
    return notification


def mark_read(notification):
    if not notification.read:
        notification.read = True
        notification.save(update_fields=["read"])
    return notification
