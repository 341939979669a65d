"""The task domain's tables: the user, the task, and the sync log of every task change.

``User`` is the project's AUTH_USER_MODEL and stays here although the account code lives in
tasks/accounts/: moving a custom user model to another app label would rename its table and
content type under every foreign key (tasks, tokens, sessions' users, notifications, e-mails,
the admin log, permissions), a migration Django does not support for AUTH_USER_MODEL and that
an existing database cannot take without hand-written SQL. The task domain needs the user
anyway (a task's owner, the time zone its times are read in). ``ApiToken`` stays with it, so
that the admin's address of the tokens (/admin/tasks/apitoken/) and their permissions stay too.
The sync log (``TaskChange``) is written by tasks.services in the transaction of each change and
read by every consumer that checks an event against it, so it belongs to the domain as well.
"""

import uuid
import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator, ProhibitNullCharactersValidator
from django.db import models
from django.db.models.fields.json import KT
from django.dispatch import Signal
from knox.models import AuthToken

from events.schemas import (
    DESCRIPTION_MAX_LENGTH,
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    MAX_TAGS,
    RECURRENCE_RULE_MAX_LENGTH,
    TAG_MAX_LENGTH,
    TITLE_MAX_LENGTH,
)
from tasks.recurrence_rules import InvalidRecurrenceRule, parse_rule


def validate_timezone(value):
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None


# PostgreSQL text cannot hold NUL: without this a NUL from any caller of the services (a chat tool, MCP)
# reached the INSERT and failed there as a DataError (a 500), not as the field's 400.
no_nul = ProhibitNullCharactersValidator()


def validate_tags(value):
    if not isinstance(value, list):
        raise ValidationError("Tags must be a list of strings.")
    if len(value) > MAX_TAGS:
        raise ValidationError(f"At most {MAX_TAGS} tags.")
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > TAG_MAX_LENGTH:
            raise ValidationError(f"Each tag must be a non-empty string of at most {TAG_MAX_LENGTH} characters.")
        no_nul(tag)


def validate_rrule_body(value):
    """An RFC 5545 RRULE body (``FREQ=...;...``) that the recurring-task service can expand."""
    try:
        parse_rule(value)
    except InvalidRecurrenceRule as exc:
        raise ValidationError(str(exc)) from None


# Sent after a changed password is saved, whichever path changed it (the API, the admin,
# ``changepassword``); tasks.accounts.tokens revokes the user's credentials on it.
password_changed = Signal()


class User(AbstractUser):
    """A person with tasks. Their time zone gives naive input times and recurrence their meaning."""

    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    # Reminders are e-mailed only to a confirmed address (notifications.confirmation).
    email_confirmed_at = models.DateTimeField(null=True, blank=True)

    def save(self, *args, **kwargs):
        # One save for both rules (a second ``save`` would silently replace this one).
        # A confirmation vouches for one address: a changed address has to be confirmed again.
        update_fields = kwargs.get("update_fields")
        if self.pk and self.email_confirmed_at and (update_fields is None or "email" in update_fields):
            stored = type(self).objects.filter(pk=self.pk).values_list("email", flat=True).first()
            if stored is not None and stored != self.email:
                self.email_confirmed_at = None
                if update_fields is not None:
                    kwargs["update_fields"] = {*update_fields, "email_confirmed_at"}
        # set_password() keeps the new password in _password until save; a hash upgraded at
        # sign-in (check_password's setter) clears it, so it is no change. A new user has nothing to revoke.
        changes_password = self._password is not None and not self._state.adding
        super().save(*args, **kwargs)
        if changes_password:
            password_changed.send(sender=type(self), user=self)


class ApiToken(AuthToken):
    """knox's token as the admin shows it: by owner and dates, never by key or digest."""

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self):
        return f"API token of {self.user}, issued {self.created:%Y-%m-%d %H:%M} UTC"


class Task(models.Model):
    """A to-do item. Only ``tasks.services`` changes it, so every change becomes its events."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=TITLE_MAX_LENGTH, validators=[no_nul])
    # A TextField's max_length is not checked by Django: the validator is what enforces it.
    description = models.TextField(
        blank=True, default="", max_length=DESCRIPTION_MAX_LENGTH,
        validators=[MaxLengthValidator(DESCRIPTION_MAX_LENGTH), no_nul],
    )
    completed = models.BooleanField(default=False)
    completed_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateTimeField(null=True, blank=True)
    remind_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=LOWEST_PRIORITY,
        validators=[MinValueValidator(HIGHEST_PRIORITY), MaxValueValidator(LOWEST_PRIORITY)],
    )
    recurrence_rule = models.CharField(
        max_length=RECURRENCE_RULE_MAX_LENGTH, null=True, blank=True, validators=[validate_rrule_body]
    )
    tags = ArrayField(models.CharField(max_length=TAG_MAX_LENGTH), default=list, blank=True, validators=[validate_tags])
    # The task this one was created from (the previous occurrence of a recurring series); unique,
    # so that a completed occurrence has exactly one next one however often its event arrives.
    parent_task_id = models.UUIDField(null=True, blank=True, unique=True)
    # Due date of the first task of this recurring series: the rule is expanded from it, so that
    # COUNT counts the whole series. Null: this task starts its series (its due date is the start).
    series_start = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The list's two main orderings (tasks.selectors.ORDERINGS), each with the id that breaks
            # its ties, so that a page, even the last of 10,000 tasks, is read in index order
            # instead of sorting all of the user's tasks; with `completed`, the commonest filter,
            # so that it and the page's count need no visit to the table (bench/bench_growth.py --part list).
            models.Index(fields=["user", "-created_at", "id"], include=["completed"], name="task_user_newest"),
            models.Index(fields=["user", "due_date", "id"], include=["completed"], name="task_user_due_first"),
            # `tag` filters are array containment (@>), which a GIN index answers.
            GinIndex(fields=["tags"], name="task_tags_gin"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(priority__gte=HIGHEST_PRIORITY, priority__lte=LOWEST_PRIORITY),
                name="task_priority_range",
            ),
        ]

    def __str__(self):
        return self.title

    def clean(self):
        errors = {}
        if self.recurrence_rule and self.due_date is None:
            errors["recurrence_rule"] = "A recurring task needs a due_date."
        if self.remind_at is not None:
            if self.due_date is None:
                errors["remind_at"] = "A reminder needs a due_date."
            elif self.remind_at > self.due_date:
                errors["remind_at"] = "remind_at must not be after due_date."
        if errors:
            raise ValidationError(errors)


class TaskChange(models.Model):
    """One ``sync.task_changed`` event of a user's task, kept for clients to catch up (tasks.sync).

    The id is the sync cursor. The task may be gone (deletions are changes too), so there is
    no foreign key to it.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    task_id = models.UUIDField()
    event = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "id"], name="taskchange_user_cursor"),
            # The consumers check events against the log (tasks.sync.logged_data, task_version):
            # by the event's id (the realtime bridge, a batch at a time) and by task (recurrence).
            models.Index(KT("event__event_id"), name="taskchange_event_id"),
            models.Index(fields=["task_id"], name="taskchange_task"),
        ]

    def __str__(self):
        return f"{self.event['data']['change_type']} {self.task_id} (cursor {self.id})"


class SyncLogPurge(models.Model):
    """How far the sync log has been purged: every ``TaskChange`` up to ``purged_through`` may be gone.

    One row (id 1), raised in the transaction of each purge batch (tasks.sync.purge_sync_log). A
    cursor below it may have missed changes that no longer exist, so ``GET /api/sync/`` answers
    410 instead of a silently incomplete catch-up.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    purged_through = models.BigIntegerField(default=0)

    def __str__(self):
        return f"sync log purged through cursor {self.purged_through}"
