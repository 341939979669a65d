"""E-mail as its own delivery: queued in the caller's transaction, sent after commit, at most once.

``queue_email`` writes an ``OutgoingEmail`` row inside the transaction of what it is about (the
notification of a due reminder, a registration) and enqueues ``send_email`` on the celery worker
once that transaction commits (``queue_emails``: the e-mails of a batch, in one celery message); the in-app notification never waits for, or rolls back with, SMTP.

``send_email`` claims the row (``pending`` -> ``sending``, committed) before it talks SMTP and
records the outcome afterwards. A second sender finds nothing to claim, so no e-mail goes out
twice; a sender that dies mid-send leaves the row ``sending``, and ``sweep`` declares it
``failed`` (outcome unknown) after ``SENDING_TIMEOUT`` rather than risk a duplicate. A refused
send is retried with the backoff of ``events.core.retry.RetryPolicy``, then ``failed``. The sweep
(celery beat, every minute) also sends what is due and was never enqueued (Redis was down).
"""

import logging
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from events.bulk import bulk_insert
from events.core.retry import RetryPolicy
from notifications.models import OutgoingEmail

logger = logging.getLogger(__name__)

Status = OutgoingEmail.Status

# Retries wait EMAIL_RETRY_INITIAL_BACKOFF seconds, doubling, never more than an hour.
RETRY_MULTIPLIER = 2.0
RETRY_MAX_BACKOFF = 3600.0
# Far beyond one SMTP conversation (each step is bounded by EMAIL_TIMEOUT): a row still
# ``sending`` this long after its claim belongs to a sender that died.
SENDING_TIMEOUT = timedelta(minutes=10)
CAP_WINDOW = timedelta(hours=1)
SWEEP_BATCH_SIZE = 100
MAX_SUBJECT_LENGTH = OutgoingEmail._meta.get_field("subject").max_length
# What the cap counts: e-mails that were, are being, or will be handed to SMTP.
COUNTED_BY_CAP = (Status.PENDING, Status.SENDING, Status.SENT, Status.FAILED)


def retry_policy():
    return RetryPolicy(
        max_attempts=settings.EMAIL_RETRY_MAX_ATTEMPTS,
        initial_backoff=settings.EMAIL_RETRY_INITIAL_BACKOFF,
        multiplier=RETRY_MULTIPLIER,
        max_backoff=RETRY_MAX_BACKOFF,
    )


def header_safe(text):
    """``text`` fit for a mail header: control characters (CR, LF, TAB, NUL, ...) and line or
    paragraph separators become spaces, runs of spaces one, and the result is cut to a subject's
    length. A title can then never add a header nor make ``send_mail`` raise BadHeaderError."""
    cleaned = "".join(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in text)
    return " ".join(cleaned.split())[:MAX_SUBJECT_LENGTH]


def recent_email_counts(user_ids):
    """{user id: their e-mails of the last hour that the cap counts} for ``user_ids`` (one query).

    Counted, not locked: two consumers delivering to one user at the same instant may each pass
    with the last slot, so the cap can be overshot by the number of parallel consumers, never more.
    """
    recent = OutgoingEmail.objects.filter(
        user__in=user_ids, created_at__gte=timezone.now() - CAP_WINDOW, status__in=COUNTED_BY_CAP
    )
    return dict(recent.values_list("user").annotate(count=Count("pk")).order_by())


def queue_email(*, user, kind, subject, body, notification=None, status=Status.PENDING):
    """Record an e-mail to ``user``'s address in the current transaction; send it after commit.

    ``status`` other than pending records why it is not sent (unconfirmed). A pending e-mail over
    the user's hourly cap is recorded ``suppressed`` instead.
    """
    email = OutgoingEmail(user=user, notification=notification, kind=kind, to=user.email, subject=subject, body=body,
                          status=status)
    return queue_emails([email])[0]


def queue_emails(emails):
    """``queue_email`` for the unsaved e-mails ``emails``: one count for the cap and one insert for
    all, their pending ones enqueued after commit. The cap counts as if they were queued one by one,
    in their order: each pending one takes a slot of its user's hour, until none is left."""
    counts = recent_email_counts({email.user_id for email in emails if email.status == Status.PENDING})
    now = timezone.now()
    for email in emails:
        email.subject = header_safe(email.subject)
        if email.status == Status.PENDING:
            if counts.get(email.user_id, 0) >= settings.EMAIL_MAX_PER_USER_PER_HOUR:
                email.status = Status.SUPPRESSED
            else:
                counts[email.user_id] = counts.get(email.user_id, 0) + 1
                email.next_attempt_at = now
    bulk_insert(emails)
    pending = [email.pk for email in emails if email.status == Status.PENDING]
    if pending:
        # robust: a broker outage must not fail the committed transaction; the sweep sends them then.
        transaction.on_commit(lambda: enqueue(pending), robust=True)
    return emails


def enqueue(email_ids, countdown=None):
    """Have the celery worker send ``email_ids`` (after ``countdown`` seconds): one message for all,
    so that a batch of reminders costs one round trip to the broker, not one per e-mail."""
    from notifications.tasks import send_emails_task

    send_emails_task.apply_async((list(email_ids),), countdown=countdown)


def claim(email_id):
    """Take a pending e-mail whose time has come; committed at once. Returns it, or None when
    another sender has it, it was sent already, or its retry is not due."""
    now = timezone.now()
    with transaction.atomic():
        claimed = OutgoingEmail.objects.filter(pk=email_id, status=Status.PENDING, next_attempt_at__lte=now).update(
            status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    return OutgoingEmail.objects.get(pk=email_id) if claimed else None


def send_email(email_id):
    """Send one e-mail if it is pending and due: claim, send, record. Returns the final row or None.

    Must run outside any transaction: the claim has to be committed before SMTP is spoken, or
    a rollback after a successful send would make the e-mail pending again.
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("send_email must run outside a transaction (its claim must commit first)")
    email = claim(email_id)
    if email is None:
        return None
    try:
        EmailMessage(email.subject, email.body, settings.DEFAULT_FROM_EMAIL, [email.to]).send()
    except Exception as exc:  # anything SMTP or the network throws: this e-mail's problem only
        return _record_failure(email, exc)
    # Fenced by the claim: the row is ours even if a too-slow send was meanwhile declared failed.
    OutgoingEmail.objects.filter(pk=email.pk, claimed_at=email.claimed_at).update(
        status=Status.SENT, sent_at=timezone.now(), last_error=""
    )
    email.refresh_from_db()
    return email


def _record_failure(email, exc):
    policy = retry_policy()
    error = f"{type(exc).__name__}: {exc}"
    mine = OutgoingEmail.objects.filter(pk=email.pk, claimed_at=email.claimed_at)
    if email.attempts >= policy.max_attempts:
        logger.warning("e-mail %s failed after %d attempts: %s", email.pk, email.attempts, error)
        mine.update(status=Status.FAILED, last_error=error)
    else:
        backoff = policy.backoff(email.attempts)
        logger.info("e-mail %s: attempt %d failed (%s), retrying in %.1f s", email.pk, email.attempts, error, backoff)
        mine.update(status=Status.PENDING, last_error=error, next_attempt_at=timezone.now() + timedelta(seconds=backoff))
        try:
            enqueue([email.pk], countdown=backoff)
        except Exception:  # the broker is down: the sweep retries it when its time comes
            logger.exception("e-mail %s: could not enqueue its retry, leaving it to the sweep", email.pk)
    email.refresh_from_db()
    return email


def sweep(batch_size=SWEEP_BATCH_SIZE):
    """Fail what a dead sender left ``sending``, and send pending e-mails whose time came (lost
    enqueues, retries). Returns (abandoned, sent_or_tried). Safe to run beside the workers."""
    now = timezone.now()
    abandoned = OutgoingEmail.objects.filter(status=Status.SENDING, claimed_at__lt=now - SENDING_TIMEOUT).update(
        status=Status.FAILED,
        last_error="Outcome unknown: the sender stopped while sending; not re-sent, to never send it twice.",
    )
    due = list(
        OutgoingEmail.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    tried = sum(1 for email_id in due if send_email(email_id) is not None)
    return abandoned, tried
