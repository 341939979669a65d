from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from tasks.models import Task, User


@admin.register(User)
class TodoUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (
        ("Time zone", {"fields": ("timezone",)}),
        ("E-mail", {"fields": ("email_confirmed_at",)}),
    )
    list_display = UserAdmin.list_display + ("timezone",)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """View only: a change made here would bypass tasks.services and so emit no events."""

    list_display = ("title", "user", "completed", "due_date", "priority", "version", "updated_at")
    list_filter = ("completed", "priority")
    search_fields = ("title", "description")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
