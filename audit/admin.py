"""The audit trail in the Django admin: read-only, by username, task by task, on the viewer's clock.

- Users appear by username. Entries keep the event's ``user_id`` (text, no foreign key: the
  trail outlives the account), so the name is looked up per row in one subquery; the user
  filter is a text box (a list of every user does not scale) matching the username exactly.
- A task id links to that task's history (the list filtered to it) and, while it exists, to
  the task itself. An entry's page shows its change against the task's previous audited
  version, and the task's reminders with their in-app and e-mail delivery states.
- Times are shown in the viewing admin's own time zone (``User.timezone``), and say which.
"""

import json
import zoneinfo

from django.contrib import admin
from django.db.models import CharField, Exists, IntegerField, OuterRef, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.models import AuditEntry
from events.admin import ReadOnlyAdmin
from events.schemas import TASK_FIELDS, parse_timestamp
from notifications.models import Notification
from tasks.models import Task, User

# Fields of a task event compared between versions; the version itself always differs.
DIFFED_FIELDS = [name for name in TASK_FIELDS if name not in ("task_id", "version", "user_id")]
TIMESTAMP_FIELDS = frozenset({"due_date", "remind_at", "completed_at"})


def viewer_zone(request):
    name = getattr(request.user, "timezone", "") or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def local_time(moment):
    """``moment`` on the active (the viewer's) clock, naming the zone: 2027-03-15 09:00:00 CET (Europe/Paris)."""
    if moment is None:
        return "—"
    zone = timezone.get_current_timezone()
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({zone.key})"


class ViewerTimeZoneMixin:
    """Renders the admin's pages of this model in the viewing admin's time zone: the columns,
    the date hierarchy and the date filter then all mean the viewer's days. The responses are
    rendered inside the override (a TemplateResponse would otherwise render after it ended)."""

    def _in_viewer_zone(self, request, view, *args, **kwargs):
        zone = viewer_zone(request)
        with timezone.override(zone):
            extra = {**(kwargs.pop("extra_context", None) or {}), "subtitle": f"Times in {zone.key}"}
            response = view(request, *args, extra_context=extra, **kwargs)
            if hasattr(response, "render"):
                response.render()
        return response

    def changelist_view(self, request, extra_context=None):
        return self._in_viewer_zone(request, super().changelist_view, extra_context=extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return self._in_viewer_zone(request, super().change_view, object_id, form_url, extra_context=extra_context)


class UsernameFilter(admin.ListFilter):
    """A text box for a username: scales to any number of users, unlike a list of them."""

    title = "user"
    parameter_name = "username"
    template = "admin/audit/username_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        values = params.pop(self.parameter_name, None) or [""]
        self.value = values[-1].strip()
        if self.value:
            self.used_parameters[self.parameter_name] = self.value

    def has_output(self):
        return True

    def expected_parameters(self):
        return [self.parameter_name]

    def queryset(self, request, queryset):
        if not self.value:
            return queryset
        ids = User.objects.filter(username__iexact=self.value).annotate(id_text=Cast("pk", CharField())).values("id_text")
        return queryset.filter(user_id__in=Subquery(ids))

    def choices(self, changelist):
        kept = [
            (name, value)
            for name, values in changelist.params.items()
            if name not in (self.parameter_name, "p")
            for value in (values if isinstance(values, list) else [values])
        ]
        yield {"value": self.value, "hidden": kept, "clear": changelist.get_query_string(remove=[self.parameter_name, "p"])}


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewerTimeZoneMixin, ReadOnlyAdmin):
    """Read-only: the audit trail is a record of what happened, nobody edits it."""

    list_display = ("occurred", "event_type", "title", "task_links", "user_link", "changes", "source")
    list_filter = ("event_type", UsernameFilter, ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("task_id", "title")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at", "-id")
    fieldsets = (
        (None, {"fields": ("event_id", "event_type", "task_links", "user_link", "title", "occurred", "recorded")}),
        ("Change", {"fields": ("diff",)}),
        ("Reminders of this task", {"fields": ("deliveries",)}),
        ("Event", {"fields": ("pretty_data", "pretty_metadata")}),
        ("Kafka", {"fields": ("topic", "partition", "offset")}),
    )
    readonly_fields = (
        "event_id", "event_type", "task_links", "user_link", "title", "occurred", "recorded", "diff", "deliveries",
        "pretty_data", "pretty_metadata", "topic", "partition", "offset",
    )

    def get_queryset(self, request):
        version = Cast(KT("data__version"), IntegerField())
        previous = (
            AuditEntry.objects.filter(task_id=OuterRef("task_id"))
            .annotate(version=Cast(KT("data__version"), IntegerField()))
            .filter(version__lt=OuterRef("version"))
            .order_by("-version", "-occurred_at")
            .values("data")[:1]
        )
        usernames = User.objects.annotate(id_text=Cast("pk", CharField())).filter(id_text=OuterRef("user_id"))
        return (
            super().get_queryset(request)
            .annotate(version=version)
            .annotate(
                username=Subquery(usernames.values("username")[:1]),
                previous_data=Subquery(previous),
                task_exists=Exists(Task.objects.filter(pk=OuterRef("task_id"))),
            )
        )

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, entry):
        return local_time(entry.occurred_at)

    @admin.display(description="recorded")
    def recorded(self, entry):
        return local_time(entry.recorded_at)

    @admin.display(description="user", ordering="username")
    def user_link(self, entry):
        if entry.username is None:
            return f"deleted user {entry.user_id}"
        changelist = reverse("admin:audit_auditentry_changelist")
        return format_html('<a href="{}?{}={}">{}</a>', changelist, UsernameFilter.parameter_name, entry.username, entry.username)

    @admin.display(description="task")
    def task_links(self, entry):
        history = format_html(
            '<a href="{}?task_id={}" title="every audited event of this task">{}…</a>',
            reverse("admin:audit_auditentry_changelist"), entry.task_id, str(entry.task_id)[:8],
        )
        if not entry.task_exists:
            return format_html("{} (deleted)", history)
        task = reverse("admin:tasks_task_change", args=[entry.task_id])
        return format_html('{} · <a href="{}">task</a>', history, task)

    @admin.display(description="changed")
    def changes(self, entry):
        if entry.event_type in ("task.created", "task.deleted"):
            return entry.event_type.removeprefix("task.")
        return ", ".join(name for name, _before, _after in task_diff(entry.previous_data, entry.data)) or "—"

    @admin.display(description="before → after")
    def diff(self, entry):
        if entry.previous_data is None:
            heading = "First audited version of this task: every field as it was set."
        else:
            heading = f"Against version {entry.previous_data.get('version')}, the previous audited version of this task."
        rows = task_diff(entry.previous_data, entry.data)
        if not rows:
            return format_html("<p>{}</p><p>No field changed.</p>", heading)
        body = format_html_join(
            "", "<tr><th scope=\"row\">{}</th><td><del>{}</del></td><td><ins>{}</ins></td></tr>",
            ((name, shown(name, before), shown(name, after)) for name, before, after in rows),
        )
        return format_html(
            '<p>{}</p><table class="audit-diff"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            heading, body,
        )

    @admin.display(description="reminders")
    def deliveries(self, entry):
        notifications = Notification.objects.filter(task_id=entry.task_id).select_related("email").order_by("-created_at")
        if not notifications:
            return "No reminder of this task has come due."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:notifications_notification_change", args=[notification.pk]),
                    local_time(notification.created_at),
                    "read" if notification.read else "unread",
                    notification.email_status,
                    email_detail(notification),
                )
                for notification in notifications
            ),
        )
        return format_html(
            '<table class="audit-deliveries"><thead><tr><th>notification</th><th>in app</th><th>e-mail</th>'
            "<th>e-mail details</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="source")
    def source(self, entry):
        return entry.metadata.get("source", "")

    @admin.display(description="data")
    def pretty_data(self, entry):
        return _pretty_json(entry.data)

    @admin.display(description="metadata")
    def pretty_metadata(self, entry):
        return _pretty_json(entry.metadata)


def task_diff(before, after):
    """[(field, before, after)] of the task fields that differ; every set field when ``before`` is None."""
    before = before or {}
    return [
        (name, before.get(name), after.get(name))
        for name in DIFFED_FIELDS
        if before.get(name) != after.get(name)
    ]


def shown(name, value):
    """A field's value as the diff shows it: times on the viewer's clock, lists and nulls readable."""
    if value is None or value == []:
        return "—"
    if name in TIMESTAMP_FIELDS:
        return local_time(parse_timestamp(value))
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def email_detail(notification):
    email = getattr(notification, "email", None)
    if email is None:
        return "no address"
    link = reverse("admin:notifications_outgoingemail_change", args=[email.pk])
    detail = f"to {email.to}, {email.attempts} attempt(s)"
    if email.last_error:
        detail += f", last error: {email.last_error[:200]}"
    return format_html('<a href="{}">{}</a>', link, detail)


def _pretty_json(value):
    return format_html('<pre class="audit-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
