"""The notification service as a consumer on the real broker, with the e-mail sender in a real celery
worker: one notification per fired reminder whatever SMTP does, e-mail at most once, and a
reminder.due the scheduler did not fire is dead-lettered as forged and creates nothing."""

import dataclasses
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone
from tasks.accounts.tokens import issue
from rest_framework.test import APIClient

from events.consumer import ConsumerRuntime
from events.registry import RetryPolicy, get_consumer
from events.schemas import ForgedEvent
from events.topics import REMINDERS, dead_letter_topic
from notifications import mail
from notifications.handlers import on_reminders_due
from notifications.models import Notification, OutgoingEmail, ScheduledReminder
from notifications.services import deliver_reminder
from notifications.tasks import send_emails_task
from testing.kafka import TestProducer, end_offsets, read_topic, running
from testing.waits import wait_for
from tests.notifications.conftest import confirmed_user, fired_reminder, forged_reminder_due
from tests.notifications.smtp_server import SMTPServer
from todo_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, multiplier=2.0, max_backoff=0.05)
Status = OutgoingEmail.Status


def notification_service():
    return ConsumerRuntime(dataclasses.replace(get_consumer("notifications"), retry=FAST_RETRIES))


def email_of(user):
    return OutgoingEmail.objects.filter(user=user).first()


def test_a_reminder_delivered_twice_makes_one_notification_and_one_email(isolated_kafka, smtp, celery_worker):
    user = confirmed_user("omar")
    reminder, event = fired_reminder(user)
    celery_worker(EMAIL_PORT=smtp.port)
    TestProducer().events([event, event], base_topic=REMINDERS, key=str(reminder.task_id))

    with running(notification_service()):
        assert wait_for(lambda: getattr(email_of(user), "status", None) == Status.SENT, timeout=90)
    assert Notification.objects.filter(user=user).count() == 1
    [message] = smtp.wait_for(1)
    assert message["To"] == "omar@example.org" and message["Subject"] == "Reminder: Renew passport"


def test_without_an_smtp_server_the_notification_still_appears_and_its_email_ends_failed(
    isolated_kafka, no_smtp, celery_worker
):
    user = confirmed_user("noor")
    reminder, event = fired_reminder(user, title="Water the plants")
    key = issue(user)
    worker = celery_worker(EMAIL_PORT=no_smtp, EMAIL_TIMEOUT=2, EMAIL_RETRY_MAX_ATTEMPTS=3, EMAIL_RETRY_INITIAL_BACKOFF=0.2)

    async def pushed_notification():
        socket = WebsocketCommunicator(application, "/ws/sync/", headers=[(b"authorization", f"Token {key}".encode())])
        assert (await socket.connect(timeout=10))[0]
        TestProducer().event(event, base_topic=REMINDERS, key=str(reminder.task_id))
        message = await socket.receive_json_from(timeout=90)
        await socket.disconnect()
        return message

    with running(notification_service()):
        pushed = async_to_sync(pushed_notification)()
        assert wait_for(lambda: email_of(user).status == Status.FAILED, timeout=90), (email_of(user).status, email_of(user).attempts, email_of(user).last_error, worker.log()[-3000:])

    assert pushed["event_type"] == "notification.created" and pushed["data"]["title"] == "Water the plants"
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    page = api.get("/api/notifications/").json()
    assert page["count"] == 1 and page["next"] is None
    assert page["results"][0]["id"] == pushed["data"]["id"]
    assert page["results"][0]["email_status"] == "failed"
    email = email_of(user)
    assert email.attempts == 3 and "ConnectionRefusedError" in email.last_error
    assert sum(end_offsets(dead_letter_topic(REMINDERS)).values()) == 0  # nothing dead-lettered


def test_a_failing_sibling_in_the_same_batch_does_not_duplicate_emails(isolated_kafka, smtp, celery_worker):
    user = confirmed_user("ines")
    reminder, event = fired_reminder(user)
    forged = forged_reminder_due(user)
    celery_worker(EMAIL_PORT=smtp.port)
    # Produced together, fetched together: the batch fails on the forged one and is re-run one by one.
    TestProducer().events([event, forged], base_topic=REMINDERS, key=str(reminder.task_id))

    with running(notification_service()):
        letters = read_topic(dead_letter_topic(REMINDERS), until=lambda messages: len(messages) >= 1, timeout=90)
        assert wait_for(lambda: getattr(email_of(user), "status", None) == Status.SENT, timeout=90)
    assert letters[0]["headers"]["event_id"] == forged["event_id"]
    assert OutgoingEmail.objects.filter(user=user).count() == 1
    assert len(smtp.wait_for(2, timeout=2)) == 1


def test_a_reminder_due_the_scheduler_did_not_fire_is_dead_lettered_as_forged_and_creates_nothing(isolated_kafka, smtp):
    victim, other = confirmed_user("victim"), confirmed_user("other")
    never_fired = forged_reminder_due(victim)
    others_reminder, others_event = fired_reminder(other)
    aimed_at_victim = {**others_event, "data": {**others_event["data"], "user_id": str(victim.id)}}
    pending, pending_event = fired_reminder(victim)
    ScheduledReminder.objects.filter(pk=pending.pk).update(status=ScheduledReminder.Status.PENDING, remind_at=timezone.now() + timedelta(days=1))
    forged = [never_fired, aimed_at_victim, pending_event]
    TestProducer().events(forged, base_topic=REMINDERS)

    with running(notification_service()):
        letters = read_topic(dead_letter_topic(REMINDERS), until=lambda messages: len(messages) >= 3, timeout=90)

    assert sorted(letter["headers"]["event_id"] for letter in letters) == sorted(event["event_id"] for event in forged)
    assert {letter["headers"]["dlq.error.type"] for letter in letters} == {"ForgedEvent"}
    assert {letter["headers"]["dlq.attempts"] for letter in letters} == {"1"}
    assert not Notification.objects.exists() and not OutgoingEmail.objects.exists()


def test_a_sender_that_dies_between_claim_and_answer_never_sends_twice(free_port, settings, celery_worker):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port
    user = confirmed_user("kofi")
    with SMTPServer(free_port, stall=True) as received:
        doomed = celery_worker(EMAIL_PORT=free_port)
        reminder, _ = fired_reminder(user, title="Mid-send")
        with transaction.atomic():
            notification = deliver_reminder(
                user=user, reminder_id=reminder.reminder_id, task_id=reminder.task_id, title=reminder.title, due_at=None
            )
        # The worker claimed it and the server has the message, but the worker never hears back.
        assert len(received.wait_for(1, timeout=90)) == 1, doomed.log()
        doomed.kill()
    email = OutgoingEmail.objects.get(notification=notification)
    assert email.status == Status.SENDING and email.attempts == 1

    with SMTPServer(free_port) as received:
        celery_worker(EMAIL_PORT=free_port)
        send_emails_task.apply_async(([email.pk],))  # a redelivered or duplicate enqueue
        assert mail.sweep() == (0, 0)  # within the timeout: not sent again, not yet given up
        # Past the timeout the sweep declares it failed, outcome unknown, and still sends nothing.
        OutgoingEmail.objects.filter(pk=email.pk).update(claimed_at=timezone.now() - mail.SENDING_TIMEOUT - timedelta(seconds=1))
        assert mail.sweep() == (1, 0)
        assert received.wait_for(1, timeout=3) == []
    email.refresh_from_db()
    assert email.status == Status.FAILED and email.last_error.startswith("Outcome unknown")


def test_a_batch_of_reminders_makes_one_notification_each_and_a_forgery_in_it_fails_the_whole_batch():
    omar, noor = confirmed_user("omar"), confirmed_user("noor")
    (_, omars_event), (_, noors_event) = fired_reminder(omar), fired_reminder(noor, title="Water the plants")

    with pytest.raises(ForgedEvent):
        on_reminders_due([omars_event, forged_reminder_due(noor), noors_event])
    assert not Notification.objects.exists()

    on_reminders_due([omars_event, noors_event, omars_event])
    assert sorted(Notification.objects.values_list("user__username", "title")) == [
        ("noor", "Water the plants"), ("omar", "Renew passport")
    ]
    assert OutgoingEmail.objects.count() == 2
