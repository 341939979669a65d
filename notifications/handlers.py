"""Handlers of the notification service (consumer ``notifications``, group notification-service)."""

import logging

from django.contrib.auth import get_user_model

from events.schemas import ForgedEvent, event_uuid
from notifications.models import ScheduledReminder
from notifications.services import deliver_reminder

logger = logging.getLogger(__name__)


def fired_reminder(data):
    """The scheduler's row behind a ``reminder.due``; ForgedEvent unless the scheduler fired it
    for exactly this task and user. Anyone who can write to the topic can write the event; only
    the scheduler marks a row fired, so the row, not the event, says what to deliver to whom."""
    reminder_id = event_uuid(data["reminder_id"], "reminder_id")
    reminder = ScheduledReminder.objects.filter(reminder_id=reminder_id).first()
    if reminder is None or reminder.status != ScheduledReminder.Status.FIRED:
        state = "unknown" if reminder is None else reminder.status
        raise ForgedEvent(f"reminder {reminder_id} was not fired by the scheduler (it is {state})")
    if str(reminder.task_id) != data["task_id"] or reminder.user_id != data["user_id"]:
        raise ForgedEvent(f"reminder {reminder_id} belongs to another task or user than the event says")
    return reminder


def on_reminder_due(event):
    reminder = fired_reminder(event["data"])
    user = get_user_model().objects.filter(pk=int(reminder.user_id)).first()
    if user is None:
        logger.info("reminder %s: user %s no longer exists, nothing to deliver", reminder.reminder_id, reminder.user_id)
        return
    deliver_reminder(
        user=user,
        reminder_id=reminder.reminder_id,
        task_id=reminder.task_id,
        title=reminder.title,
        due_at=reminder.due_at,
    )
