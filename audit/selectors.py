from audit.models import AuditEntry


def audit_entries_for_user(user, *, task_id=None, event_type=None):
    """The user's audit trail, newest first, optionally narrowed to one task or one event type."""
    entries = AuditEntry.objects.filter(user_id=str(user.pk))
    if task_id is not None:
        entries = entries.filter(task_id=task_id)
    if event_type:
        entries = entries.filter(event_type=event_type)
    return entries.order_by("-occurred_at", "-id")
