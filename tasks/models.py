import uuid
import zoneinfo

from dateutil.rrule import rrulestr
from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MAX_TAGS = 20
MAX_TAG_LENGTH = 50
HIGHEST_PRIORITY = 1
LOWEST_PRIORITY = 4


def validate_timezone(value):
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None


def validate_tags(value):
    if not isinstance(value, list):
        raise ValidationError("Tags must be a list of strings.")
    if len(value) > MAX_TAGS:
        raise ValidationError(f"At most {MAX_TAGS} tags.")
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_LENGTH:
            raise ValidationError(f"Each tag must be a non-empty string of at most {MAX_TAG_LENGTH} characters.")


def validate_rrule_body(value):
    """An RFC 5545 RRULE body (``FREQ=...;...``): no ``RRULE:`` prefix, no DTSTART, one line."""
    if ":" in value or "\n" in value or "\r" in value:
        raise ValidationError("Give the RRULE body only (e.g. FREQ=WEEKLY;BYDAY=MO), without DTSTART or 'RRULE:'.")
    if not value.upper().startswith("FREQ=") and ";FREQ=" not in value.upper():
        raise ValidationError("An RRULE needs FREQ (e.g. FREQ=DAILY).")


def parse_rrule(body, dtstart):
    """The rule of ``body`` starting at ``dtstart``; ValidationError when dateutil cannot read it."""
    try:
        return rrulestr(body, dtstart=dtstart)
    except Exception as exc:  # noqa: BLE001 - dateutil raises ValueError, TypeError, KeyError, ... for bad rules
        raise ValidationError(f"Not a valid RRULE: {exc}") from None


class User(AbstractUser):
    """A person with tasks. Their time zone gives naive input times and recurrence their meaning."""

    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])


class Task(models.Model):
    """A to-do item. Only ``tasks.services`` changes it, so every change becomes its events."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    completed = models.BooleanField(default=False)
    completed_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateTimeField(null=True, blank=True)
    remind_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(
        default=LOWEST_PRIORITY,
        validators=[MinValueValidator(HIGHEST_PRIORITY), MaxValueValidator(LOWEST_PRIORITY)],
    )
    recurrence_rule = models.CharField(max_length=500, null=True, blank=True, validators=[validate_rrule_body])
    tags = ArrayField(models.CharField(max_length=MAX_TAG_LENGTH), default=list, blank=True, validators=[validate_tags])
    # The task this one was created from (the previous occurrence of a recurring series).
    parent_task_id = models.UUIDField(null=True, blank=True, db_index=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"], name="task_user_created"),
            models.Index(fields=["user", "due_date"], name="task_user_due"),
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
        elif self.recurrence_rule:
            try:
                parse_rrule(self.recurrence_rule, self.due_date)
            except ValidationError as exc:
                errors["recurrence_rule"] = exc.messages
        if self.remind_at is not None:
            if self.due_date is None:
                errors["remind_at"] = "A reminder needs a due_date."
            elif self.remind_at > self.due_date:
                errors["remind_at"] = "remind_at must not be after due_date."
        if errors:
            raise ValidationError(errors)
