"""Running the outbox relay in tests: in a thread of the test process, or as `manage.py relay_outbox`."""

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import transaction

from events.models import OutboxEvent
from events.outbox import serialise
from events.relay import OutboxRelay
from events.schemas import make_event

REPO = Path(__file__).resolve().parent.parent


def sync_event(task_id, description=""):
    """A valid sync.task_changed event of task ``task_id`` (topic task-updates)."""
    task = {
        "id": task_id, "title": "t", "description": description, "completed": False, "completed_at": None,
        "due_date": None, "remind_at": None, "priority": 4, "recurrence_rule": None, "tags": [],
        "parent_task_id": None, "user_id": "1", "version": 1,
        "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z",
    }
    data = {"task_id": task_id, "change_type": "created", "task": task, "user_id": "1"}
    return make_event("sync.task_changed", data, source="todo-api", correlation_id="c")


def outbox_rows(*specs):
    """Rows written straight into the outbox (as if emit had let them through), in the given order:
    ``(task_id, description)`` each; returns them."""
    rows = []
    with transaction.atomic():
        for task_id, description in specs:
            event = sync_event(task_id, description)
            rows.append(OutboxEvent.objects.create(
                event_id=event["event_id"], event_type=event["event_type"], topic="task-updates", key=task_id,
                payload=serialise(event),
            ))
    return rows


@contextmanager
def relay_thread(poll_interval=0.2):
    """An OutboxRelay running in a thread of the test process until the block ends."""
    stop = threading.Event()
    relay = OutboxRelay(poll_interval=poll_interval, stop=stop)
    thread = threading.Thread(target=relay.run, name="outbox-relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the relay did not stop"


@pytest.fixture
def outbox_relay(transactional_db):
    """A relay publishing this test's committed outbox rows to the shared broker."""
    with relay_thread() as relay:
        yield relay


def test_database_url():
    """DATABASE_URL of the database this test runs on (pytest-django's test database)."""
    db = settings.DATABASES["default"]
    return (
        f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'])}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


test_database_url.__test__ = False  # a helper, not a test


class RelayProcess:
    """`python manage.py relay_outbox` on this test's database and topic prefix."""

    def __init__(self, log_path, bootstrap_servers=None):
        env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
        if bootstrap_servers:
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap_servers
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "relay_outbox", "--poll-interval", "0.2"],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self):
        return Path(self.log_path).read_text()

    def stop(self, timeout=60):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout)
        self._log.close()
        return self.process.returncode

    def kill(self):
        self.process.kill()
        self.process.wait(30)
        self._log.close()


@pytest.fixture
def relay_processes(transactional_db, tmp_path):
    """Start relays with ``relay_processes(n)``; every one is stopped at the end of the test."""
    started = []

    def start(count=1, bootstrap_servers=None):
        new = [RelayProcess(tmp_path / f"relay-{len(started) + i}.log", bootstrap_servers) for i in range(count)]
        started.extend(new)
        return new

    yield start
    for relay in started:
        if relay.process.poll() is None:
            relay.stop()
