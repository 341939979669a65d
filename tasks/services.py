"""The only code that creates, changes, completes, reopens or deletes a task (and registers users).

Each service runs in one transaction: it locks the task row, applies the change, bumps
``version`` and emits the events of CONTRACT.md section 4's emission table through the outbox,
so the events exist if and only if the change committed, in per-task order. Callers (the REST
API, MCP tools, the recurrence consumer) pass an ``EventContext`` naming the source and the
correlation id. Invalid input raises django.core.exceptions.ValidationError with field errors.
A write given ``expected_version`` (the REST API's If-Match) raises
tasks.concurrency.VersionConflict, changing nothing, when the locked row is at another version.
"""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from events.outbox import EventTooLarge, emit_all
from notifications.confirmation import request_email_confirmation
from recurrence.rules import same_wall_time
from tasks import tokens
from tasks.concurrency import check_version
from tasks.events import reminder_event, sync_event, task_event, task_object
from tasks.models import Task, User
from tasks.ratelimit import count_scheduled_reminder
from tasks.sync import record_change

EDITABLE_FIELDS = frozenset(
    {"title", "description", "due_date", "remind_at", "priority", "recurrence_rule", "tags", "parent_task_id", "series_start"}
)


def _check_fields(fields):
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise TypeError(f"not editable task fields: {sorted(unknown)}")


def _validate(task):
    # Field validators and Task.clean(); the user is set by the service, uniqueness is the pk's.
    task.full_clean(exclude=["user"], validate_unique=False, validate_constraints=False)


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
    try:
        emit_all([(event, task_id) for event in events])
    except EventTooLarge as error:  # the change fails like any invalid input: a 400, nothing emitted
        raise ValidationError(str(error)) from None
    for event in events:
        if event["event_type"] == "sync.task_changed":
            record_change(event)  # the catch-up log of GET /api/sync/, in the same transaction


@transaction.atomic
def task_create(*, user, context, **fields):
    _check_fields(fields)
    task = Task(user=user, **fields)
    _validate(task)
    task.save()
    obj = task_object(task)
    events = [task_event("task.created", obj, context)]
    if reminder := _pending_reminder(task):
        events.append(_scheduled(task, reminder, context))
    events.append(sync_event("created", obj, context))
    _emit(task.id, events)
    return task


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


@transaction.atomic
def user_register(*, username, password, email="", timezone="UTC"):
    """A new user. Raises ValidationError naming the bad fields."""
    user = User(username=username, email=email, timezone=timezone)
    errors = {}
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        errors["password"] = exc.messages
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same name registered concurrently, after full_clean looked
        raise ValidationError({"username": ["A user with that username already exists."]}) from None
    request_email_confirmation(user)  # reminders are e-mailed only once the address is confirmed
    return user


@transaction.atomic
def user_change_password(*, user, old_password, new_password):
    """Set a new password; every old token is revoked (see tasks.tokens). Returns a new API token.

    Raises ValidationError naming old_password (wrong) or new_password (refused by the validators).
    """
    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["The current password is not correct."]})
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages}) from None
    user.set_password(new_password)
    user.save(update_fields=["password"])
    return tokens.issue(user)


def _clean_field(user, name, value):
    """``value`` checked by the User model's own field (its validators); ValidationError naming it."""
    try:
        return User._meta.get_field(name).clean(value, user)
    except ValidationError as exc:
        raise ValidationError({name: exc.messages}) from None


def _check_current_password(user, password):
    if not user.check_password(password or ""):
        raise ValidationError({"current_password": ["The current password is not correct."]})


@transaction.atomic
def user_change_timezone(*, user, timezone, context):
    """Move ``user`` to another IANA time zone. Returns the tasks it changed.

    Instants stay instants: a one-off task's due date and reminder are not touched, the list
    just shows them on the new clock. A recurring series keeps its wall time instead ("every
    Monday 09:00" is 09:00 on the new clock), because recurrence/rules.py expands the rule in
    the owner's zone from the wall time of ``series_start``:

    - every series that can still produce an occurrence (its open task, or a completed one whose
      next occurrence the recurring-task service has not created yet) gets ``series_start`` set
      to the instant with the same wall time in the new zone. COUNT still counts from that start.
    - the open task of a series is one of its occurrences and moves with it: its due date to
      the same wall time on the new clock, its reminder by the same distance (so "1 h before"
      stays 1 h before). Keeping its old instant would leave it off the re-anchored series: after
      a move west its completion would be followed by the same day's occurrence a second time.

    Everything happens in one transaction through ``task_update``, so each changed task emits
    its events (and its reminder is rescheduled); nothing changes when the zone is the same.
    """
    timezone = _clean_field(user, "timezone", timezone)
    # Locked, so that two changes of one user's zone re-anchor one after the other.
    old_zone = User.objects.select_for_update().values_list("timezone", flat=True).get(pk=user.pk)
    user.timezone = timezone
    if timezone == old_zone:
        return []
    user.save(update_fields=["timezone"])
    changed = []
    for task in Task.objects.filter(user=user, recurrence_rule__isnull=False).exclude(recurrence_rule="").order_by("created_at"):
        if task.completed and Task.objects.filter(parent_task_id=task.id).exists():
            continue  # its successor carries the series on, and is re-anchored itself
        anchored = {"series_start": same_wall_time(task.series_start or task.due_date, old_tz=old_zone, new_tz=timezone)}
        if not task.completed:
            anchored["due_date"] = same_wall_time(task.due_date, old_tz=old_zone, new_tz=timezone)
            if task.remind_at is not None:
                anchored["remind_at"] = anchored["due_date"] - (task.due_date - task.remind_at)
        updated = task_update(task=task, context=context, **anchored)
        if updated.version != task.version:
            changed.append(updated)
    return changed


@transaction.atomic
def user_change_email(*, user, email, current_password):
    """Set a new address, to be confirmed again: reminders are not mailed to it until its
    confirmation link (mailed now, notifications.confirmation) is opened. The current password is
    required: whoever holds the address can reset the password. Raises ValidationError naming
    ``email`` or ``current_password``."""
    _check_current_password(user, current_password)
    email = _clean_field(user, "email", email)
    if email == user.email:
        return user
    user.email = email
    user.save(update_fields=["email"])  # User.save clears email_confirmed_at when the address changed
    request_email_confirmation(user)
    return user
