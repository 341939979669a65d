"""Delivering a reminder: one notification and its push, whatever happens to e-mail; the e-mail is
queued apart from it, header-safe, capped per hour, and only for a confirmed address."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from channels.layers import get_channel_layer
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from notifications import mail
from notifications.models import Notification, OutgoingEmail
from notifications.services import ReminderDelivery, deliver_reminder, deliver_reminders
from tasks.models import User
from tasks.realtime.groups import user_group_name
from testing.waits import wait_for
from tests.notifications.conftest import confirmed_user

pytestmark = pytest.mark.django_db(transaction=True)

Status = OutgoingEmail.Status


def deliver(user, title="Call the dentist"):
    with transaction.atomic():
        return deliver_reminder(user=user, reminder_id=uuid.uuid4(), task_id=uuid.uuid4(), title=title, due_at=None)


def test_a_reminder_becomes_one_notification_and_its_email_is_sent_once_after_commit(smtp):
    user = confirmed_user("ada")
    reminder_id = uuid.uuid4()
    with transaction.atomic():
        first = deliver_reminder(user=user, reminder_id=reminder_id, task_id=uuid.uuid4(), title="Call the dentist", due_at=None)
        # Nothing is sent inside the transaction: only a row waits for the commit.
        assert first.email.status == Status.PENDING
        assert smtp.messages == []
    with transaction.atomic():  # the same reminder delivered again (a redelivered event)
        again = deliver_reminder(user=user, reminder_id=reminder_id, task_id=uuid.uuid4(), title="Call the dentist", due_at=None)

    assert first.pk == again.pk
    assert Notification.objects.filter(user=user).count() == 1
    assert mail.send_email(first.email.pk).status == Status.SENT
    assert mail.send_email(first.email.pk) is None  # already sent: nothing to claim
    messages = smtp.wait_for(1)
    assert len(messages) == 1
    assert messages[0]["To"] == "ada@example.org"
    assert messages[0]["Subject"] == "Reminder: Call the dentist"
    email = OutgoingEmail.objects.get(notification=first)
    assert (email.status, email.attempts, email.sent_at is not None) == (Status.SENT, 1, True)


def test_without_an_smtp_server_the_notification_is_stored_and_its_email_retried_then_failed(no_smtp, settings):
    settings.EMAIL_RETRY_MAX_ATTEMPTS, settings.EMAIL_RETRY_INITIAL_BACKOFF = 3, 0.05
    user = confirmed_user("linus")
    notification = deliver(user)
    assert Notification.objects.filter(pk=notification.pk).exists()

    first = mail.send_email(notification.email.pk)
    assert first.status == Status.PENDING and first.attempts == 1
    assert first.last_error.startswith("ConnectionRefusedError")
    assert (first.next_attempt_at - first.claimed_at).total_seconds() == pytest.approx(0.05, abs=0.05)
    # The sweep sends each retry when its backoff has passed, until the attempts are used up.
    assert wait_for(lambda: (mail.sweep(), OutgoingEmail.objects.get(pk=first.pk).status)[1] == Status.FAILED, timeout=30)
    email = OutgoingEmail.objects.get(pk=first.pk)
    assert email.attempts == 3 and "ConnectionRefusedError" in email.last_error


def test_a_title_with_line_breaks_is_mailed_under_one_clean_subject_line(smtp):
    user = confirmed_user("mallory")
    notification = deliver(user, title="Pay rent\r\nBcc: victim@example.com\n\x1b\tSubject: spam")
    mail.send_email(notification.email.pk)

    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Reminder: Pay rent Bcc: victim@example.com Subject: spam"
    assert message["Bcc"] is None and message.get_all("Subject") == [message["Subject"]]
    assert notification.title.startswith("Pay rent\r\n")  # the in-app text keeps what the user typed


def test_beyond_the_hourly_cap_emails_are_suppressed_and_notifications_are_not(smtp, settings):
    settings.EMAIL_MAX_PER_USER_PER_HOUR = 2
    user = confirmed_user("spammed")
    notifications = [deliver(user, title=f"reminder {n}") for n in range(3)]

    assert [n.email.status for n in notifications] == [Status.PENDING, Status.PENDING, Status.SUPPRESSED]
    assert mail.sweep() == (0, 2)
    assert len(smtp.wait_for(2)) == 2
    assert Notification.objects.filter(user=user).count() == 3
    assert OutgoingEmail.objects.get(notification=notifications[2]).status == Status.SUPPRESSED
    other = confirmed_user("unaffected")  # the cap is per user
    assert deliver(other).email.status == Status.PENDING


def test_in_one_batch_the_cap_counts_each_email_in_order_after_those_of_the_hour(settings):
    settings.EMAIL_MAX_PER_USER_PER_HOUR = 2
    user, other = confirmed_user("busy"), confirmed_user("calm")
    deliver(user, title="earlier this hour")
    with transaction.atomic():
        notifications = deliver_reminders(
            [ReminderDelivery(owner, uuid.uuid4(), uuid.uuid4(), f"reminder {n}", None) for n, owner in enumerate((user, user, other, user))]
        )
    assert [n.email.status for n in notifications] == [Status.PENDING, Status.SUPPRESSED, Status.PENDING, Status.SUPPRESSED]


def test_an_unconfirmed_address_is_not_mailed_and_the_state_says_why(smtp):
    user = User.objects.create_user("grace", email="grace@example.org", password="pw-123456")
    notification = deliver(user)
    assert notification.email.status == Status.UNCONFIRMED
    assert mail.sweep() == (0, 0)
    assert smtp.wait_for(1, timeout=0.5) == []


def test_a_user_without_an_address_gets_the_in_app_notification_only(smtp):
    user = User.objects.create_user("hopper", password="pw-123456")
    notification = deliver(user)
    assert notification.email_status == "none"
    assert not OutgoingEmail.objects.exists()


def listening_to(user):
    """A channel of the channel layer in ``user``'s group, as an open socket of theirs has."""
    layer = get_channel_layer()

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(user_group_name(user.id), channel)
        return channel

    return asyncio.run(listen())


def received(channel):
    return asyncio.run(asyncio.wait_for(get_channel_layer().receive(channel), timeout=5))


def test_the_notification_is_pushed_to_the_users_group_after_commit():
    user = User.objects.create_user("margaret", password="pw-123456")
    channel = listening_to(user)
    notification = deliver(user)

    message = received(channel)
    assert message["type"] == "push.batch"
    [pushed] = message["messages"]
    assert pushed["event_type"] == "notification.created"
    assert pushed["data"]["id"] == notification.id
    assert pushed["data"]["read"] is False
    assert pushed["data"]["email_status"] == "none"


def test_a_batch_pushes_each_user_their_new_notifications_in_one_message_in_order():
    ada, bob = confirmed_user("ada"), User.objects.create_user("bob", password="pw-123456")
    ada_channel, bob_channel = listening_to(ada), listening_to(bob)
    delivered_before = deliver(ada, title="Old")
    assert received(ada_channel)["messages"][0]["data"]["id"] == delivered_before.id

    deliveries = [ReminderDelivery(ada, delivered_before.reminder_id, delivered_before.task_id, "Old", None)] + [
        ReminderDelivery(user, uuid.uuid4(), uuid.uuid4(), title, None)
        for user, title in ((ada, "First"), (bob, "Second"), (ada, "Third"))
    ]
    with transaction.atomic():
        notifications = deliver_reminders(deliveries)

    assert notifications[0] == delivered_before  # delivered before: neither created nor pushed again
    assert [n.title for n in notifications] == ["Old", "First", "Second", "Third"]
    assert [m["data"]["title"] for m in received(ada_channel)["messages"]] == ["First", "Third"]
    assert [(m["data"]["title"], m["data"]["email_status"]) for m in received(bob_channel)["messages"]] == [("Second", "none")]
    assert list(OutgoingEmail.objects.filter(user=ada).order_by("pk").values_list("subject", flat=True)) == [
        "Reminder: Old", "Reminder: First", "Reminder: Third"
    ]


def test_the_notification_gives_the_due_time_on_the_owners_clock():
    user = User.objects.create_user("kenji", password="pw-123456", timezone="Asia/Tokyo")
    notification = deliver_reminder(
        user=user, reminder_id=uuid.uuid4(), task_id=uuid.uuid4(), title="Flight", due_at=datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    )
    assert notification.body == "Reminder: Flight is due at 2026-12-01 09:30 (Asia/Tokyo)"


@pytest.mark.django_db(transaction=False)  # the schedule is data of a migration, which a flush removes
def test_the_email_sweep_is_on_the_beat_schedule_every_minute():
    sweep = PeriodicTask.objects.get(task="notifications.send_pending_emails")
    assert sweep.enabled and (sweep.interval.every, sweep.interval.period) == (1, "minutes")
