from django.db import models


class AuditEntry(models.Model):
    """One task event as the audit service received it, stored once (unique event_id).

    ``data`` and ``metadata`` are the event's own; the Kafka coordinates say where it was read.
    Entries are never changed: the admin shows them read-only.
    """

    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    task_id = models.UUIDField(db_index=True)
    user_id = models.CharField(max_length=64, help_text="The task owner's id, as in the event.")
    title = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField(help_text="The event's timestamp.")
    recorded_at = models.DateTimeField(auto_now_add=True)
    data = models.JSONField()
    metadata = models.JSONField()
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    offset = models.BigIntegerField()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            # GET /api/audit/: one user's trail, newest first.
            models.Index(fields=["user_id", "-occurred_at"], name="audit_user_newest"),
            # The admin's and the API's filter by type (equality only). Not db_index=True, which on a
            # CharField also builds a varchar_pattern_ops index for LIKE that nothing runs: a sixth
            # index to update on every insert (~10% of PostgreSQL's CPU per audited event).
            models.Index(fields=["event_type"], name="audit_event_type"),
        ]

    def __str__(self):
        return f"{self.event_type} of task {self.task_id} at {self.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
