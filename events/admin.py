from django.contrib import admin, messages
from django.db.models import F
from django.utils.html import format_html

from events.models import OutboxEvent
from events.outbox import retry_parked

# Enough of a payload to recognise the event; a refused one may be a megabyte.
PAYLOAD_PREVIEW_CHARS = 10_000


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows and never writes: for rows that only a service may change (a change made here would
    emit no events) or that record what already happened (the outbox, the audit trail, deliveries)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class OutboxStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("parked", "parked (refused by Kafka)"),
            ("held", "held behind a parked row"),
            ("pending", "pending"),
            ("sent", "sent"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "parked":
                return queryset.parked()
            case "held":
                return queryset.held()
            case "pending":
                return queryset.ready()
            case "sent":
                return queryset.filter(sent_at__isnull=False)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """Read-only: the outbox is what the relay publishes; the one operation is retrying parked rows."""

    list_display = ("id", "event_type", "topic", "key", "created_at", "sent_at", "parked_at", "park_reason")
    list_filter = (OutboxStateFilter, "topic", "event_type")
    search_fields = ("key", "=event_id")
    # Parked rows first (they need an operator), then the newest.
    ordering = (F("parked_at").desc(nulls_last=True), "-id")
    actions = ["retry_selected"]
    fields = (
        "id", "event_id", "event_type", "topic", "key", "created_at", "sent_at", "parked_at", "park_reason",
        "payload_preview",
    )
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_preview(self, row):
        size = len(row.payload.encode())
        shown = row.payload[:PAYLOAD_PREVIEW_CHARS]
        more = f" … ({size:,} bytes in all)" if len(shown) < len(row.payload) else ""
        return format_html("<pre>{}{}</pre>", shown, more)

    def has_retry_permission(self, request):
        # Un-parking changes what the relay does next: for those who may change outbox rows.
        return request.user.has_perm("events.change_outboxevent")

    @admin.action(description="Retry the selected parked rows (after fixing the cause)", permissions=["retry"])
    def retry_selected(self, request, queryset):
        count = retry_parked(queryset)
        self.message_user(
            request, f"{count} parked row(s) retried; the relay publishes them in order.", messages.SUCCESS
        )
