"""Handlers of the notification service (consumer ``notifications``, group notification-service).

``on_reminders_due`` takes the reminders fetched together: their scheduler rows and owners are
read in one query each for the whole batch, and ``deliver_reminders`` writes their notifications
and e-mails in a few statements; ``on_reminder_due`` one, when the runtime re-runs the events of a
failed batch one by one.
"""

import logging

from django.contrib.auth import get_user_model

from events.schemas import ForgedEvent, event_uuid
from notifications.models import ScheduledReminder
from notifications.services import ReminderDelivery, deliver_reminders

logger = logging.getLogger(__name__)


def fired_reminders(datas):
    """The scheduler's rows behind the ``reminder.due`` events of ``datas``, in their order (one
    query); ForgedEvent unless the scheduler fired each for exactly its task and user. Anyone who
    can write to the topic can write the event; only the scheduler marks a row fired, so the row,
    not the event, says what to deliver to whom."""
    ids = [event_uuid(data["reminder_id"], "reminder_id") for data in datas]
    rows = ScheduledReminder.objects.in_bulk(ids)
    reminders = []
    for data, reminder_id in zip(datas, ids):
        reminder = rows.get(reminder_id)
        if reminder is None or reminder.status != ScheduledReminder.Status.FIRED:
            state = "unknown" if reminder is None else reminder.status
            raise ForgedEvent(f"reminder {reminder_id} was not fired by the scheduler (it is {state})")
        if str(reminder.task_id) != data["task_id"] or reminder.user_id != data["user_id"]:
            raise ForgedEvent(f"reminder {reminder_id} belongs to another task or user than the event says")
        reminders.append(reminder)
    return reminders


def on_reminders_due(events):
    reminders = fired_reminders([event["data"] for event in events])
    users = get_user_model().objects.in_bulk({int(reminder.user_id) for reminder in reminders})
    deliveries = []
    for reminder in reminders:
        user = users.get(int(reminder.user_id))
        if user is None:
            logger.info("reminder %s: user %s no longer exists, nothing to deliver", reminder.reminder_id, reminder.user_id)
            continue
        deliveries.append(ReminderDelivery(user, reminder.reminder_id, reminder.task_id, reminder.title, reminder.due_at))
    deliver_reminders(deliveries)


def on_reminder_due(event):
    on_reminders_due([event])
