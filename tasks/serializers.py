"""Input shapes of the API: types and formats. Domain rules live in the model and services."""

from datetime import UTC

from rest_framework import serializers

from events.schemas import (
    DESCRIPTION_MAX_LENGTH,
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    MAX_TAGS,
    RECURRENCE_RULE_MAX_LENGTH,
    TAG_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    utc_timestamp,
)
from tasks.selectors import DEFAULT_ORDERING, ORDERINGS


class StringField(serializers.CharField):
    """A JSON string, nothing else: numbers and booleans are not silently turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class UTCDateTimeField(serializers.DateTimeField):
    """Reads any ISO 8601 time (naive = the current, i.e. the user's, time zone); writes UTC with Z."""

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601")
        try:
            # In UTC too, as it is stored: 9999-12-31T23:00:00-05:00 is past the last representable year.
            return super().to_internal_value(value).astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("invalid", format="ISO 8601")

    def to_representation(self, value):
        return utc_timestamp(value) if value else None


class TaskInputSerializer(serializers.Serializer):
    """POST and PUT give every field (missing ones take their defaults); PATCH only some."""

    title = StringField(max_length=TITLE_MAX_LENGTH)
    description = StringField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=DESCRIPTION_MAX_LENGTH, default=""
    )
    due_date = UTCDateTimeField(required=False, allow_null=True, default=None)
    remind_at = UTCDateTimeField(required=False, allow_null=True, default=None)
    priority = serializers.IntegerField(
        required=False, min_value=HIGHEST_PRIORITY, max_value=LOWEST_PRIORITY, default=LOWEST_PRIORITY
    )
    recurrence_rule = StringField(required=False, allow_null=True, max_length=RECURRENCE_RULE_MAX_LENGTH, default=None)
    tags = serializers.ListField(
        child=StringField(max_length=TAG_MAX_LENGTH), required=False, max_length=MAX_TAGS, default=list
    )
    # parent_task_id is not input: only the recurring-task service links an occurrence to its parent.

    def validate_recurrence_rule(self, value):
        return value or None  # "" means "no recurrence"


class TaskFilterSerializer(serializers.Serializer):
    completed = serializers.BooleanField(required=False)
    priority = serializers.IntegerField(required=False, min_value=HIGHEST_PRIORITY, max_value=LOWEST_PRIORITY)
    tag = serializers.ListField(child=StringField(max_length=TAG_MAX_LENGTH), required=False, max_length=MAX_TAGS)
    search = StringField(required=False, max_length=200)
    due_before = UTCDateTimeField(required=False)
    due_after = UTCDateTimeField(required=False)
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default=DEFAULT_ORDERING)
