"""The admin of users and their API tokens (the models are tasks.models', see its docstring)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from knox.models import AuthToken

from tasks.models import ApiToken, User

# knox's own admin lists and searches token digests and key prefixes: ours replaces it.
admin.site.unregister(AuthToken)


@admin.register(User)
class TodoUserAdmin(UserAdmin):
    fieldsets = UserAdmin.fieldsets + (
        ("Time zone", {"fields": ("timezone",)}),
        ("E-mail", {"fields": ("email_confirmed_at",)}),
    )
    list_display = UserAdmin.list_display + ("timezone",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Who holds tokens and until when; deleting one revokes it. No key, digest or way to make one:
    a token exists in clear only in the answer to the sign-in that issued it."""

    list_display = ("user", "created", "expiry")
    fields = ("user", "created", "expiry")
    list_filter = ("expiry",)
    search_fields = ("user__username",)
    list_select_related = ("user",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
