"""Creating the next occurrence of a completed recurring task, for the task's owner only.

The task.completed event says which task was completed, by whom, at which version. Anyone who
can write to task-events could say so too, so the event only *names* a task version; what the
new occurrence is made of, and whose account it lands in, comes from the database's record of
that version (``completed_tasks``), and an event the database contradicts is a ForgedEvent.
"""

import logging

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from events.schemas import ForgedEvent, event_uuid, parse_timestamp
from tasks.events import EventContext, contradicted_fields, task_object
from tasks.models import Task
from tasks.recurrence_rules import carry_over_remind_at, next_occurrence
from tasks.services import task_create_many
from tasks.sync import logged_versions

logger = logging.getLogger(__name__)

SOURCE = "recurring-task-service"


def _one_of(field_name, task_ids):
    """A filter: the uuid column ``field_name`` of a task is one of ``task_ids`` (canonical UUID text),
    asked with ONE array parameter. The ORM's IN list costs ~6 us an id to build and quote: in two
    such queries, ~5% of this consumer's CPU per completion (its profile, issue #14)."""
    column = f"{connection.ops.quote_name(Task._meta.db_table)}.{connection.ops.quote_name(Task._meta.get_field(field_name).column)}"
    return RawSQL(f"{column} = ANY(%s::uuid[])", ["{" + ",".join(task_ids) + "}"], output_field=BooleanField())


def completed_tasks(completions):
    """The task object of each completed task version that ``completions`` (task.completed data)
    name, as the database recorded it, in their order, and the current rows of those tasks
    ({task id: Task}); raises ForgedEvent when the database contradicts any of the events. Two
    queries for all of them: the task rows, and the sync log for the versions no row is at.

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
    named = [(str(event_uuid(completed["task_id"], "task_id")), completed["version"]) for completed in completions]
    rows = {str(task.id): task for task in Task.objects.filter(_one_of("id", {task_id for task_id, _ in named}))}
    at_version = {(task_id, version): task_object(rows[task_id]) for task_id, version in named
                  if task_id in rows and rows[task_id].version == version}
    logged = logged_versions([pair for pair in named if pair not in at_version])
    records = []
    for completed, (task_id, version) in zip(completions, named):
        record = at_version.get((task_id, version)) or (logged[(task_id, version)]["data"]["task"] if (task_id, version) in logged else None)
        if record is None:
            raise ForgedEvent(f"task.completed names version {version} of task {task_id}, which the database never recorded")
        differing = contradicted_fields(completed, record)
        if differing:
            raise ForgedEvent(f"task.completed of task {task_id} version {version} contradicts the database on {', '.join(differing)}")
        if not record["completed"]:
            raise ForgedEvent(f"task {task_id} was not completed at version {version}")
        records.append(record)
    return records, rows


def create_next_occurrences(completions, *, now=None):
    """Create the task that follows each completed one of ``completions`` (pairs of the data of a
    task.completed event and its correlation id), in a few statements for all of them.

    Returns the new tasks. Per completion, as ``create_next_occurrence`` says: nothing when the
    series has ended or the next occurrence exists already (another delivery, or the same task
    twice in the batch), ForgedEvent (for the whole batch) when the database contradicts one.
    A next occurrence created meanwhile by a racing consumer fails the batch on the unique
    ``parent_task_id``: the runtime then re-runs its events one by one (``create_next_occurrence``).
    """
    records, rows = completed_tasks([completed for completed, _ in completions])  # from here on, only what the database vouches for
    owners = get_user_model().objects.in_bulk({int(task["user_id"]) for task in records})
    existing = {str(parent) for parent in Task.objects.filter(_one_of("parent_task_id", {task["id"] for task in records}))
                .values_list("parent_task_id", flat=True)}
    now = now or timezone.now()
    creations = []
    for task, (_, correlation_id) in zip(records, completions):
        if task["id"] in existing:
            logger.info("task %s: its next occurrence exists already", task["id"])
            continue
        existing.add(task["id"])
        row = rows.get(task["id"])
        fields = next_occurrence_fields(task, owners[int(task["user_id"])], row.series_start if row else None, now)
        if fields is not None:
            creations.append((owners[int(task["user_id"])], EventContext(source=SOURCE, correlation_id=correlation_id), fields))
    return task_create_many(creations) if creations else []


def next_occurrence_fields(task, owner, series_start, now):
    """The fields of the task that follows ``task`` (a task object of a completed version), or None
    when its series has ended. ``series_start``: what the completed row says (None when it was
    deleted meanwhile: the series goes on from this occurrence)."""
    due = parse_timestamp(task["due_date"])
    series_start = series_start or due
    next_due = next_occurrence(task["recurrence_rule"], series_start=series_start, due=due, tz_name=owner.timezone, now=now)
    if next_due is None:
        logger.info("task %s: its series has ended", task["id"])
        return None
    return {
        "title": task["title"],
        "description": task["description"],
        "priority": task["priority"],
        "tags": task["tags"],
        "recurrence_rule": task["recurrence_rule"],
        "due_date": next_due,
        "remind_at": carry_over_remind_at(old_due=due, old_remind_at=parse_timestamp(task["remind_at"]), new_due=next_due),
        "parent_task_id": task["id"],
        "series_start": series_start,
    }


def create_next_occurrence(completed, *, correlation_id, now=None):
    """Create the task that follows ``completed`` (the data of its task.completed event).

    Returns the new task, or None when the series has ended or the next occurrence exists
    already. The rule is expanded in the owner's time zone from the series start (the first
    task's due date), so COUNT counts the whole series; a late completion skips to the first
    occurrence after now instead of creating a backlog (tasks/recurrence_rules.py explains both).
    Exactly one next occurrence per completed one: ``parent_task_id`` is unique, so a
    redelivered event or a racing consumer hits the constraint instead of creating a twin.
    Raises ForgedEvent when the database contradicts the event (``completed_tasks``).
    """
    try:
        with transaction.atomic():  # a savepoint: the constraint violation must not end the caller's transaction
            created = create_next_occurrences([(completed, correlation_id)], now=now)
    except IntegrityError:
        if Task.objects.filter(parent_task_id=completed["task_id"]).exists():
            logger.info("task %s: its next occurrence exists already", completed["task_id"])
            return None
        raise
    return created[0] if created else None
