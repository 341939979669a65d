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

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="notification_user_recent")]

    def __str__(self):
        return f"{self.title} for user {self.user_id}"

    @property
    def email_status(self):
        """The state of this notification's e-mail; ``none`` when the user gave no address."""
        email = getattr(self, "email", None)
        return email.status if email is not None else OutgoingEmail.NO_EMAIL


class OutgoingEmail(models.Model):
    """One e-mail and the state of its delivery, apart from the transaction that asked for it.

    Written in the transaction of what it is about (a notification, a registration) and sent
    after commit by ``notifications.mail``, at most once: a sender claims the row (``sending``,
    committed) before it talks SMTP, so a crash mid-send leaves it ``sending`` until the sweep
    declares it ``failed`` (outcome unknown) instead of sending it twice.
    """

    NO_EMAIL = "none"  # shown for a notification without an e-mail row: the user gave no address

    class Kind(models.TextChoices):
        REMINDER = "reminder"
        CONFIRMATION = "confirmation"
        PASSWORD_RESET = "password_reset"

    class Status(models.TextChoices):
        UNCONFIRMED = "unconfirmed", "Not sent: address not confirmed"
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        SUPPRESSED = "suppressed", "Not sent: hourly cap reached"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="emails")
    notification = models.OneToOneField(
        Notification, null=True, blank=True, on_delete=models.CASCADE, related_name="email"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    to = models.EmailField()
    subject = models.CharField(max_length=255)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweep's two queries: pending rows whose time came, and sending rows past the timeout.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=models.Q(status__in=["pending", "sending"]),
                name="outgoing_email_open",
            ),
            # The hourly cap counts one user's recent e-mails.
            models.Index(fields=["user", "created_at"], name="outgoing_email_user_recent"),
        ]

    def __str__(self):
        return f"{self.kind} e-mail to {self.to} ({self.status})"
