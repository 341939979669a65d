from django.contrib import admin

from events.admin import ReadOnlyAdmin
from notifications.models import Notification, OutgoingEmail


class OutgoingEmailInline(admin.StackedInline):
    model = OutgoingEmail
    fields = readonly_fields = ("status", "to", "subject", "attempts", "last_error", "next_attempt_at", "sent_at")
    can_delete = False
    extra = 0

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "title", "user", "read", "email_status")
    list_filter = ("read", "email__status")
    search_fields = ("title", "task_id", "reminder_id")
    list_select_related = ("user", "email")
    inlines = [OutgoingEmailInline]

    @admin.display(description="e-mail")
    def email_status(self, notification):
        return notification.email_status


@admin.register(OutgoingEmail)
class OutgoingEmailAdmin(ReadOnlyAdmin):
    """Every e-mail and its delivery: pending/sending/sent/failed, or why it was not sent."""

    list_display = ("created_at", "kind", "to", "subject", "status", "attempts", "sent_at")
    list_filter = ("status", "kind")
    search_fields = ("to", "subject", "user__username")
    list_select_related = ("user",)
    readonly_fields = (
        "user", "notification", "kind", "to", "subject", "body", "status", "attempts", "last_error",
        "next_attempt_at", "claimed_at", "sent_at", "created_at",
    )
