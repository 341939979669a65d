"""The notification service as a consumer: one notification per reminder.due, and a delivery that
keeps failing is retried and then dead-lettered, never dropped."""

import dataclasses
import uuid

import pytest
from django.utils import timezone

from events.consumer import ConsumerRuntime
from events.registry import RetryPolicy, get_consumer
from events.schemas import make_event, utc_timestamp
from events.topics import REMINDERS
from notifications.models import Notification
from tasks.models import User
from tests.events.kafka_helpers import TestProducer, read_topic, running, wait_for
from tests.notifications.smtp_server import SMTPServer

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, multiplier=2.0, max_backoff=0.05)


def reminder_due(user, title="Renew passport"):
    data = {
        "reminder_id": str(uuid.uuid4()),
        "task_id": str(uuid.uuid4()),
        "title": title,
        "due_at": utc_timestamp(timezone.now()),
        "remind_at": utc_timestamp(timezone.now()),
        "user_id": str(user.id),
    }
    return make_event("reminder.due", data, source="reminder-scheduler", correlation_id="c-1")


@pytest.fixture(autouse=True)
def smtp_backend(settings):
    # pytest-django swaps in the in-memory backend; these tests talk SMTP to a real server.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def notification_service():
    return ConsumerRuntime(dataclasses.replace(get_consumer("notifications"), retry=FAST_RETRIES))


def test_a_reminder_delivered_twice_makes_one_notification_and_one_email(isolated_kafka, settings, free_port):
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port
    user = User.objects.create_user("omar", email="omar@example.org", password="pw-123456")
    event = reminder_due(user)
    TestProducer().events([event, event], base_topic=REMINDERS)

    with SMTPServer(free_port) as received, running(notification_service()):
        assert wait_for(lambda: Notification.objects.filter(user=user).exists(), timeout=60)
        assert len(received.wait_for(1)) == 1
    assert Notification.objects.filter(user=user).count() == 1
    assert len(received.messages) == 1


def test_a_delivery_that_keeps_failing_is_dead_lettered_after_its_retries(isolated_kafka, settings, free_port):
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port, 2  # nobody listens
    user = User.objects.create_user("noor", email="noor@example.org", password="pw-123456")
    event = reminder_due(user)
    TestProducer().event(event, base_topic=REMINDERS, key=event["data"]["task_id"])

    with running(notification_service()):
        letters = read_topic(f"{REMINDERS}.dlq", until=lambda messages: len(messages) >= 1, timeout=60)
    assert len(letters) == 1
    assert letters[0]["headers"]["event_id"] == event["event_id"]
    assert letters[0]["headers"]["dlq.attempts"] == "3"
    assert letters[0]["headers"]["dlq.consumer.group"].endswith("notification-service")
    assert not Notification.objects.filter(user=user).exists()
