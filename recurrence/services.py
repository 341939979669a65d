"""Creating the next occurrence of a completed recurring task."""

import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from recurrence.rules import carry_over_remind_at, next_occurrence
from tasks.events import EventContext
from tasks.models import Task
from tasks.services import task_create

logger = logging.getLogger(__name__)

SOURCE = "recurring-task-service"


def _parse_time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def create_next_occurrence(completed, *, correlation_id, now=None):
    """Create the task that follows ``completed`` (the data of its task.completed event).

    Returns the new task, or None when the series has ended or the next occurrence exists
    already. The rule is expanded in the owner's time zone from the series start (the first
    task's due date), so COUNT counts the whole series; a late completion skips to the first
    occurrence after now instead of creating a backlog (recurrence/rules.py explains both).
    Exactly one next occurrence per completed one: ``parent_task_id`` is unique, so a
    redelivered event or a racing consumer hits the constraint instead of creating a twin.
    """
    owner = get_user_model().objects.get(pk=int(completed["user_id"]))
    due = _parse_time(completed["due_date"])
    # The completed row still says where its series started; if it was deleted meanwhile, the
    # series goes on from this occurrence.
    series_start = Task.objects.filter(pk=completed["task_id"]).values_list("series_start", flat=True).first() or due
    next_due = next_occurrence(
        completed["recurrence_rule"],
        series_start=series_start,
        due=due,
        tz_name=owner.timezone,
        now=now or timezone.now(),
    )
    if next_due is None:
        logger.info("task %s: its series has ended", completed["task_id"])
        return None
    try:
        with transaction.atomic():  # a savepoint: the constraint violation must not end the caller's transaction
            return task_create(
                user=owner,
                context=EventContext(source=SOURCE, correlation_id=correlation_id),
                title=completed["title"],
                description=completed["description"],
                priority=completed["priority"],
                tags=completed["tags"],
                recurrence_rule=completed["recurrence_rule"],
                due_date=next_due,
                remind_at=carry_over_remind_at(
                    old_due=due, old_remind_at=_parse_time(completed["remind_at"]), new_due=next_due
                ),
                parent_task_id=completed["task_id"],
                series_start=series_start,
            )
    except IntegrityError:
        if Task.objects.filter(parent_task_id=completed["task_id"]).exists():
            logger.info("task %s: its next occurrence exists already", completed["task_id"])
            return None
        raise
