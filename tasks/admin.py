from django.contrib import admin

from events.admin import ReadOnlyAdmin
from tasks.models import Task


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    """View only: a change made here would bypass tasks.services and so emit no events."""

    list_display = ("title", "user", "completed", "due_date", "priority", "version", "updated_at")
    list_filter = ("completed", "priority")
    search_fields = ("title", "description")
