import json

from django.contrib import admin
from django.utils.html import format_html

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is a record of what happened, nobody edits it."""

    list_display = ("occurred_at", "event_type", "title", "task_id", "user_id", "source")
    list_filter = ("event_type", "user_id", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("task_id", "title")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at", "-id")
    fieldsets = (
        (None, {"fields": ("event_id", "event_type", "task_id", "user_id", "title", "occurred_at", "recorded_at")}),
        ("Event", {"fields": ("pretty_data", "pretty_metadata")}),
        ("Kafka", {"fields": ("topic", "partition", "offset")}),
    )
    readonly_fields = (
        "event_id", "event_type", "task_id", "user_id", "title", "occurred_at", "recorded_at",
        "pretty_data", "pretty_metadata", "topic", "partition", "offset",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="source")
    def source(self, entry):
        return entry.metadata.get("source", "")

    @admin.display(description="data")
    def pretty_data(self, entry):
        return _pretty_json(entry.data)

    @admin.display(description="metadata")
    def pretty_metadata(self, entry):
        return _pretty_json(entry.metadata)


def _pretty_json(value):
    return format_html('<pre class="audit-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
