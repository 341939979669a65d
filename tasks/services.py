"""The only code that creates, changes, completes, reopens or deletes a task.

Each service runs in one transaction: it locks the task row, applies the change, bumps
``version`` and emits the events of CONTRACT.md section 4's emission table through the outbox,
so the events exist if and only if the change committed, in per-task order. Callers (the REST
API, MCP tools, the recurrence consumer) pass an ``EventContext`` naming the source and the
correlation id. Invalid input raises django.core.exceptions.ValidationError with field errors.
A write given ``expected_version`` (the REST API's If-Match) raises
tasks.concurrency.VersionConflict, changing nothing, when the locked row is at another version.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from events.bulk import bulk_insert
from events.outbox import EventTooLarge, emit_all
from tasks.concurrency import check_version
from tasks.events import reminder_event, sync_event, task_event, task_object
from tasks.models import Task
from tasks.ratelimit import count_scheduled_reminder
from tasks.sync import record_changes

EDITABLE_FIELDS = frozenset(
    {"title", "description", "due_date", "remind_at", "priority", "recurrence_rule", "tags", "parent_task_id", "series_start"}
)


def _check_fields(fields):
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not editable task fields: {sorted(unknown)}")


# What the services set themselves (the id, owner, version, completion and timestamps): only the
# fields callers give can be wrong, and checking the others was half of full_clean's cost per task
# (the profile of task_create_many in the report of issue #14).
SET_BY_THE_SERVICES = [field.name for field in Task._meta.concrete_fields if field.name not in EDITABLE_FIELDS]


def _validate(task):
    # The validators of the fields callers give, and Task.clean(); uniqueness is the database's.
    task.full_clean(exclude=SET_BY_THE_SERVICES, validate_unique=False, validate_constraints=False)


def _lock(task, expected_version=None):
    """The current row, locked until commit: concurrent changes of one task run one after another,
    so versions never collide and their outbox rows commit in id order. The expected version is
    compared with the locked row, so of two writers expecting one version exactly one wins."""
    locked = Task.objects.select_for_update().get(pk=task.pk)
    check_version(locked, expected_version)
    return locked


def _pending_reminder(task):
    """The reminder a task has pending, as the data its reminder events need, or None."""
    if task.remind_at is None or task.completed:
        return None
    return {
        "task_id": task.id,
        "title": task.title,
        "due_date": task.due_date,
        "remind_at": task.remind_at,
        "user_id": task.user_id,
    }


def _when(reminder):
    return None if reminder is None else (reminder["remind_at"], reminder["due_date"])


def _scheduled(task, reminder, context):
    """The reminder.scheduled event of a write, counted against the owner's hourly cap.

    Beyond the cap this raises tasks.ratelimit.RateLimited (a 429) and the write's transaction
    rolls back: nothing changes. The next occurrence of a recurring series is not counted: the
    recurring-task service creates it, one per completion, and must not fail on the user's cap.
    """
    if task.parent_task_id is None:
        count_scheduled_reminder(reminder["user_id"])
    return reminder_event("reminder.scheduled", **reminder, context=context)


def _emit(task_id, events):
    _emit_many([(task_id, events)])


def _emit_many(keyed_events):
    """Emit the events of each ``(task_id, events)`` pair, all in one outbox insert, and log their sync events."""
    try:
        emit_all([(event, task_id) for task_id, events in keyed_events for event in events])
    except EventTooLarge as error:  # the change fails like any invalid input: a 400, nothing emitted
        raise ValidationError(str(error)) from None
    # The catch-up log of GET /api/sync/, in the same transaction.
    record_changes([event for _, events in keyed_events for event in events if event["event_type"] == "sync.task_changed"])


def _created_events(task, context):
    obj = task_object(task)
    events = [task_event("task.created", obj, context)]
    if reminder := _pending_reminder(task):
        events.append(_scheduled(task, reminder, context))
    events.append(sync_event("created", obj, context))
    return events


def task_create(*, user, context, **fields):
    """Create a task of ``user`` with ``fields`` (of EDITABLE_FIELDS) and emit its events."""
    return task_create_many([(user, context, fields)])[0]


@transaction.atomic
def task_create_many(creations):
    """``task_create`` for each ``(user, context, fields)``, in one transaction and a few statements
    for all of them (one insert of the tasks, one of their outbox rows, the sync log's two): what
    the recurring-task service needs for a batch of completions, and the one way a task is created
    (``task_create`` is a batch of one). Raises ValidationError for invalid fields; a unique
    constraint (a ``parent_task_id`` taken) fails the whole batch with IntegrityError."""
    tasks = []
    for user, context, fields in creations:
        _check_fields(fields)
        task = Task(user=user, **fields)
        _validate(task)
        tasks.append((task, context))
    bulk_insert([task for task, _ in tasks])
    _emit_many([(task.id, _created_events(task, context)) for task, context in tasks])
    return [task for task, _ in tasks]


@transaction.atomic
def task_update(*, task, context, expected_version=None, **changes):
    """Apply ``changes``. A change that changes nothing is not a change: no new version, no events."""
    _check_fields(changes)
    task = _lock(task, expected_version)
    before = _pending_reminder(task)
    changed = {name: value for name, value in changes.items() if getattr(task, name) != value}
    if not changed:
        return task
    for name, value in changed.items():
        setattr(task, name, value)
    if "series_start" not in changes and changed.keys() & {"due_date", "recurrence_rule"}:
        # A new due date or rule starts a new series from this task, unless the caller says where
        # the series starts (a re-anchored series, user_change_timezone).
        task.series_start = None
    _validate(task)
    task.version += 1
    task.save()
    after = _pending_reminder(task)
    obj = task_object(task)
    events = [task_event("task.updated", obj, context)]
    if _when(before) != _when(after):
        if before:
            events.append(reminder_event("reminder.cancelled", **before, context=context))
        if after:
            events.append(_scheduled(task, after, context))
    events.append(sync_event("updated", obj, context))
    _emit(task.id, events)
    return task


@transaction.atomic
def task_complete(*, task, context, expected_version=None):
    """Complete the task; completing a completed task changes nothing and emits nothing."""
    task = _lock(task, expected_version)
    if task.completed:
        return task
    reminder = _pending_reminder(task)
    task.completed = True
    task.completed_at = timezone.now()
    task.version += 1
    task.save()
    obj = task_object(task)
    events = [task_event("task.completed", obj, context)]
    if reminder:
        events.append(reminder_event("reminder.cancelled", **reminder, context=context))
    events.append(sync_event("updated", obj, context))
    _emit(task.id, events)
    return task


@transaction.atomic
def task_reopen(*, task, context, expected_version=None):
    """Reopen a completed task; reopening an open task changes nothing and emits nothing."""
    task = _lock(task, expected_version)
    if not task.completed:
        return task
    task.completed = False
    task.completed_at = None
    task.version += 1
    task.save()
    obj = task_object(task)
    events = [task_event("task.updated", obj, context)]
    reminder = _pending_reminder(task)
    if reminder and reminder["remind_at"] > timezone.now():
        events.append(_scheduled(task, reminder, context))
    events.append(sync_event("updated", obj, context))
    _emit(task.id, events)
    return task


@transaction.atomic
def task_delete(*, task, context, expected_version=None):
    """Delete the task. Its events carry its last state, one version after the previous one."""
    task = _lock(task, expected_version)
    reminder = _pending_reminder(task)
    task.version += 1
    task.updated_at = timezone.now()
    obj = task_object(task)
    task_id = task.id
    task.delete()
    events = [task_event("task.deleted", obj, context)]
    if reminder:
        events.append(reminder_event("reminder.cancelled", **reminder, context=context))
    events.append(sync_event("deleted", obj, context))
    _emit(task_id, events)
