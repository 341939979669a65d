"""Handlers of the notification service (consumer ``notifications``, group notification-service)."""

import logging
from datetime import datetime

from django.contrib.auth import get_user_model

from notifications.services import deliver_reminder

logger = logging.getLogger(__name__)


def on_reminder_due(event):
    data = event["data"]
    user = get_user_model().objects.filter(pk=int(data["user_id"])).first()
    if user is None:
        logger.info("reminder %s: user %s no longer exists, nothing to deliver", data["reminder_id"], data["user_id"])
        return
    due_at = datetime.fromisoformat(data["due_at"].replace("Z", "+00:00")) if data["due_at"] else None
    deliver_reminder(
        user=user, reminder_id=data["reminder_id"], task_id=data["task_id"], title=data["title"], due_at=due_at
    )
