"""Fixtures of the notification tests: a real SMTP server, reminders the scheduler fired, users with
confirmed addresses, and celery workers on this run's own queue (tests/conftest.py celery_queue)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from events.schemas import make_event, utc_timestamp
from notifications.models import ScheduledReminder
from notifications.scheduler import reminder_due_data
from tests.notifications.smtp_server import SMTPServer
from testing.factories import UserFactory
from testing.processes import Process, program, worker_environment


@pytest.fixture
def smtp(settings, free_port):
    """A real SMTP server, and Django's SMTP backend pointed at it (pytest-django swaps in locmem)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port
    with SMTPServer(free_port) as received:
        yield received


@pytest.fixture
def no_smtp(settings, free_port):
    """Django's SMTP backend pointed at a port where nobody listens."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port, 2
    return free_port


@pytest.fixture
def celery_worker(transactional_db, tmp_path, celery_queue):
    """``celery_worker(EMAIL_PORT=...)`` starts a celery worker on this run's queue; stopped after the test."""
    started = []

    def start(**env):
        worker = Process(
            program("celery", "-A", "todo_project", "worker", "-Q", celery_queue, "--pool=solo", "--without-mingle",
                    "--without-gossip"),
            tmp_path / f"celery-{len(started)}.log",
            worker_environment(EMAIL_HOST="127.0.0.1", **{name: str(value) for name, value in env.items()}),
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def confirmed_user(username, **fields):
    return UserFactory(username=username, password="pw-123456", email_confirmed_at=timezone.now(), **fields)


def fired_reminder(user, title="Renew passport", due_in=timedelta(hours=1)):
    """A reminder the scheduler fired for ``user``, and its ``reminder.due`` event."""
    now = timezone.now()
    reminder = ScheduledReminder.objects.create(
        reminder_id=uuid.uuid4(), task_id=uuid.uuid4(), user_id=str(user.id), title=title, due_at=now + due_in,
        remind_at=now, status=ScheduledReminder.Status.FIRED, correlation_id="c-1", fired_at=now,
    )
    return reminder, make_event("reminder.due", reminder_due_data(reminder), source="reminder-scheduler", correlation_id="c-1")


def forged_reminder_due(user, title="Send your password to evil@example.com"):
    """A well-formed ``reminder.due`` that the scheduler never fired."""
    now = utc_timestamp(timezone.now())
    data = {"reminder_id": str(uuid.uuid4()), "task_id": str(uuid.uuid4()), "title": title, "due_at": now, "remind_at": now, "user_id": str(user.id)}
    return make_event("reminder.due", data, source="reminder-scheduler", correlation_id="c-1")
