"""Delivering a reminder: one notification, an e-mail to a real SMTP server, a push to open clients."""

import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer
from django.db import transaction

from notifications.models import Notification
from notifications.services import deliver_reminder
from tasks.models import User
from tasks.realtime import user_group_name
from tests.notifications.smtp_server import SMTPServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def smtp(settings, free_port):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port
    with SMTPServer(free_port) as received:
        yield received


def deliver(user, reminder_id):
    return deliver_reminder(
        user=user, reminder_id=reminder_id, task_id=uuid.uuid4(), title="Call the dentist", due_at=None
    )


def test_a_reminder_becomes_one_notification_and_one_email(smtp):
    user = User.objects.create_user("ada", email="ada@example.org", password="pw-123456")
    reminder_id = uuid.uuid4()

    first = deliver(user, reminder_id)
    again = deliver(user, reminder_id)

    assert first.pk == again.pk
    assert Notification.objects.filter(user=user).count() == 1
    messages = smtp.wait_for(1)
    assert len(messages) == 1
    assert messages[0]["To"] == "ada@example.org"
    assert "Call the dentist" in messages[0]["Subject"]
    assert first.emailed_at is not None


def test_a_user_without_an_address_gets_the_in_app_notification_only(smtp):
    user = User.objects.create_user("grace", password="pw-123456")
    notification = deliver(user, uuid.uuid4())
    assert notification.emailed_at is None
    assert smtp.wait_for(1, timeout=0.5) == []


def test_an_smtp_failure_raises_and_stores_nothing(settings, free_port):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port, 2
    user = User.objects.create_user("linus", email="linus@example.org", password="pw-123456")
    with pytest.raises(OSError):
        with transaction.atomic():
            deliver(user, uuid.uuid4())
    assert not Notification.objects.filter(user=user).exists()


def test_the_notification_is_pushed_to_the_users_group_after_commit():
    user = User.objects.create_user("margaret", password="pw-123456")
    layer = get_channel_layer()

    async def listen():
        channel = await layer.new_channel()
        await layer.group_add(user_group_name(user.id), channel)
        return channel

    channel = asyncio.run(listen())
    with transaction.atomic():
        notification = deliver(user, uuid.uuid4())

    message = asyncio.run(asyncio.wait_for(layer.receive(channel), timeout=5))
    assert message["type"] == "push"
    assert message["message"]["event_type"] == "notification.created"
    assert message["message"]["data"]["id"] == notification.id
    assert message["message"]["data"]["read"] is False


def test_the_notification_gives_the_due_time_on_the_owners_clock(smtp):
    from datetime import UTC, datetime

    user = User.objects.create_user("kenji", password="pw-123456", timezone="Asia/Tokyo")
    notification = deliver_reminder(
        user=user, reminder_id=uuid.uuid4(), task_id=uuid.uuid4(), title="Flight", due_at=datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    )
    assert notification.body == "Reminder: Flight is due at 2026-12-01 09:30 (Asia/Tokyo)"
