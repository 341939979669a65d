"""Delivering reminders: the in-app notification, its push to open clients, and the e-mail."""

import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import transaction

from events.bulk import bulk_insert
from events.schemas import utc_timestamp
from notifications.mail import queue_emails
from notifications.models import Notification, OutgoingEmail
from tasks.realtime.groups import push_to_users


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


@dataclass(frozen=True)
class ReminderDelivery:
    """A fired reminder to deliver to ``user``."""

    user: object
    reminder_id: object
    task_id: object
    title: str
    due_at: object


def deliver_reminder(*, user, reminder_id, task_id, title, due_at):
    """``deliver_reminders`` of one reminder: its notification."""
    return deliver_reminders([ReminderDelivery(user, reminder_id, task_id, title, due_at)])[0]


def deliver_reminders(deliveries):
    """Create each reminder's notification once, queue its e-mail, push it after commit; returns
    the notification of each delivery, in their order (the one that existed for a reminder
    delivered before).

    A batch costs a few statements whatever its size: one read of the notifications that exist,
    one insert of the new ones, the e-mails' cap count and insert (``queue_emails``), and after
    commit one push per user with that user's new notifications in order.

    Runs inside the consumer's transaction, which nothing here can fail: the e-mail is only a
    row (``notifications.mail``) sent after commit, so an SMTP outage, a slow server or a
    failing sibling in the same batch never costs the in-app notification nor sends twice. A
    notification another transaction inserts meanwhile for the same reminder fails the insert
    on its unique reminder_id (nothing is written twice); the consumer then runs the batch again
    event by event, which finds it.
    """
    reminder_ids = [uuid.UUID(str(delivery.reminder_id)) for delivery in deliveries]
    notifications = Notification.objects.in_bulk(set(reminder_ids), field_name="reminder_id")
    created = []
    for delivery, reminder_id in zip(deliveries, reminder_ids):
        if reminder_id not in notifications:
            notifications[reminder_id] = Notification(
                user=delivery.user, reminder_id=reminder_id, task_id=delivery.task_id, title=delivery.title,
                body=reminder_body(delivery.title, delivery.due_at, delivery.user.timezone),
            )
            created.append(notifications[reminder_id])
    bulk_insert(created)
    emails = []
    for notification in created:
        if notification.user.email:
            emails.append(email_of(notification))
        else:
            # Known to have no e-mail: email_status then needs no query for the reverse relation.
            Notification.email.related.set_cached_value(notification, None)
    queue_emails(emails)
    pushes = {}
    for notification in created:
        message = {"event_type": "notification.created", "data": notification_payload(notification)}
        pushes.setdefault(notification.user_id, []).append(message)
    if pushes:
        transaction.on_commit(lambda: push_to_users(pushes))
    return [notifications[reminder_id] for reminder_id in reminder_ids]


def email_of(notification):
    """The unsaved e-mail of a new notification to its owner's address (queued if it is confirmed)."""
    user = notification.user
    return OutgoingEmail(
        user=user, notification=notification, kind=OutgoingEmail.Kind.REMINDER, to=user.email,
        subject=f"Reminder: {notification.title}", body=notification.body,
        status=OutgoingEmail.Status.PENDING if user.email_confirmed_at else OutgoingEmail.Status.UNCONFIRMED,
    )


def mark_read(notification):
    if not notification.read:
        notification.read = True
        notification.save(update_fields=["read"])
    return notification
