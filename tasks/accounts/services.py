"""What users do to their accounts: register, change their password, time zone or e-mail address.

Each runs in one transaction. Invalid input raises django.core.exceptions.ValidationError naming
the fields. A time-zone change re-anchors the user's recurring series through tasks.services, so
every task it moves emits its events; a new address is confirmed again (notifications.confirmation);
a new password revokes every token (tasks.accounts.tokens).
"""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from notifications.confirmation import request_email_confirmation
from tasks.accounts import tokens
from tasks.models import Task, User
from tasks.recurrence_rules import same_wall_time
from tasks.services import task_update


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
    """Set a new password; every old token is revoked (see tasks.accounts.tokens). Returns a new API token.

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
    Monday 09:00" is 09:00 on the new clock), because tasks/recurrence_rules.py expands the rule in
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
