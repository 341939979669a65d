"""Creating the next occurrence of a completed recurring task, for the task's owner only.

The task.completed event says which task was completed, by whom, at which version. Anyone who
can write to task-events could say so too, so the event only *names* a task version; what the
new occurrence is made of, and whose account it lands in, comes from the database's record of
that version (``completed_task``), and an event the database contradicts is a ForgedEvent.
"""

import logging
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from events.schemas import ForgedEvent, parse_timestamp
from tasks.events import EventContext, contradicted_fields, task_object
from tasks.models import Task
from tasks.recurrence_rules import carry_over_remind_at, next_occurrence
from tasks.services import task_create
from tasks.sync import task_at_version

logger = logging.getLogger(__name__)

SOURCE = "recurring-task-service"


def completed_task(completed):
    """The task object of the completed task version that ``completed`` (task.completed data) names,
    as the database recorded it; raises ForgedEvent when the database contradicts the event.

    The record is the task row when it is still at that version, else the sync log's entry for
    that version (tasks.sync: written in the transaction of every change, deletions included).
    That covers the legitimate races, whose outcome must not depend on how far the consumer lags:

    - completed, then edited, reopened or deleted before the consumer ran: the row is newer (or
      gone) but the log still holds the completed version, so the series goes on exactly as if
      the consumer had run at once; a reopen-and-complete-again then meets the unique
      ``parent_task_id`` and creates nothing more.
    - a redelivered event names the same version again: it checks out, and the existing next
      occurrence stops it (see ``create_next_occurrence``).
    - a completed occurrence that the service itself created has its own row and log entries,
      like any task: the chain goes on from it.

    Forged, with nothing created: a task or version the database never had (a future version
    included), any field that differs from the record (another owner, another rule or due
    date), and a version at which the task was not completed. A legitimate event older than the
    sync log's retention whose task has changed since cannot be vouched for either (a consumer
    that far behind is an outage), nor the last completion of an account deleted meanwhile (its
    tasks and log went with it, and nobody is left to continue the series for); the dead letter
    says why, and tasks/sync.py says when such letters can be replayed.
    """
    task_id, version = completed["task_id"], completed["version"]
    task = Task.objects.filter(pk=task_id).first()
    record = task_object(task) if task is not None and task.version == version else task_at_version(task_id, version)
    if record is None:
        raise ForgedEvent(f"task.completed names version {version} of task {task_id}, which the database never recorded")
    differing = contradicted_fields(completed, record)
    if differing:
        raise ForgedEvent(f"task.completed of task {task_id} version {version} contradicts the database on {', '.join(differing)}")
    if not record["completed"]:
        raise ForgedEvent(f"task {task_id} was not completed at version {version}")
    return record


def create_next_occurrence(completed, *, correlation_id, now=None):
    """Create the task that follows ``completed`` (the data of its task.completed event).

    Returns the new task, or None when the series has ended or the next occurrence exists
    already. The rule is expanded in the owner's time zone from the series start (the first
    task's due date), so COUNT counts the whole series; a late completion skips to the first
    occurrence after now instead of creating a backlog (tasks/recurrence_rules.py explains both).
    Exactly one next occurrence per completed one: ``parent_task_id`` is unique, so a
    redelivered event or a racing consumer hits the constraint instead of creating a twin.
    Raises ForgedEvent when the database contradicts the event (``completed_task``).
    """
    task = completed_task(completed)  # from here on, only what the database vouches for
    owner = get_user_model().objects.get(pk=int(task["user_id"]))
    due = parse_timestamp(task["due_date"])
    # The completed row still says where its series started; if it was deleted meanwhile, the
    # series goes on from this occurrence.
    series_start = Task.objects.filter(pk=task["id"]).values_list("series_start", flat=True).first() or due
    next_due = next_occurrence(
        task["recurrence_rule"],
        series_start=series_start,
        due=due,
        tz_name=owner.timezone,
        now=now or timezone.now(),
    )
    if next_due is None:
        logger.info("task %s: its series has ended", task["id"])
        return None
    try:
        with transaction.atomic():  # a savepoint: the constraint violation must not end the caller's transaction
            return task_create(
                user=owner,
                context=EventContext(source=SOURCE, correlation_id=correlation_id),
                title=task["title"],
                description=task["description"],
                priority=task["priority"],
                tags=task["tags"],
                recurrence_rule=task["recurrence_rule"],
                due_date=next_due,
                remind_at=carry_over_remind_at(
                    old_due=due, old_remind_at=parse_timestamp(task["remind_at"]), new_due=next_due
                ),
                parent_task_id=task["id"],
                series_start=series_start,
            )
    except IntegrityError:
        if Task.objects.filter(parent_task_id=task["id"]).exists():
            logger.info("task %s: its next occurrence exists already", task["id"])
            return None
        raise
