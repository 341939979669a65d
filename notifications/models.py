from django.conf import settings
from django.db import models


class ScheduledReminder(models.Model):
    """The reminder scheduler's own copy of the schedule, built from the reminders topic.

    One row per reminder_id. The scheduler fires a pending row at ``remind_at`` by emitting
    ``reminder.due`` in the same transaction that marks it fired, so it fires exactly once.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        FIRED = "fired"
        CANCELLED = "cancelled"

    reminder_id = models.UUIDField(primary_key=True)
    task_id = models.UUIDField(db_index=True)
    user_id = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    due_at = models.DateTimeField(null=True)
    remind_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    correlation_id = models.CharField(max_length=255)
    fired_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The scheduler's two queries ("what is due", "when is the next one") read only this.
            models.Index(fields=["remind_at"], condition=models.Q(status="pending"), name="reminder_pending_at"),
        ]

    def __str__(self):
        return f"{self.title} at {self.remind_at:%Y-%m-%d %H:%M:%S}Z ({self.status})"


class Notification(models.Model):
    """An in-app notification of a reminder that came due; one per reminder."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    reminder_id = models.UUIDField(unique=True)
    task_id = models.UUIDField()
    title = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read = models.BooleanField(default=False)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="notification_user_recent")]

    def __str__(self):
        return f"{self.title} for user {self.user_id}"
