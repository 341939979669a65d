"""`python manage.py run_consumer <name>` as a real process: crash recovery, clean shutdown, metrics."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.request import urlopen

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEntry
from events.models import ProcessedEvent
from events.topics import TASK_EVENTS, group_name
from testing.factories import task_event
from testing.kafka import TestProducer, committed_offsets, end_offsets, read_topic
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker_env(isolated_kafka, tmp_path):
    """The environment of a worker process that uses this test's database and Kafka namespace."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "METRICS_PORT": "0",
    }


def start_worker(env, log_path, name="audit"):
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_consumer", name], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def stop(process, sig=signal.SIGTERM, timeout=60):
    process.send_signal(sig)
    return process.wait(timeout)


def test_a_consumer_killed_mid_stream_then_restarted_stores_every_event_exactly_once(worker_env, tmp_path):
    producer = TestProducer()
    first_half = [task_event() for _ in range(600)]
    second_half = [task_event() for _ in range(600)]
    producer.events(first_half)
    log = tmp_path / "worker.log"

    worker = start_worker(worker_env, log)
    try:
        assert wait_for(lambda: AuditEntry.objects.exists(), timeout=90, interval=0.01), log.read_text()
        worker.kill()  # SIGKILL: no chance to commit
        worker.wait(30)
        stored_at_kill = AuditEntry.objects.count()
        producer.events(second_half)
        worker = start_worker(worker_env, log)
        assert wait_for(lambda: AuditEntry.objects.count() >= 1200, timeout=120), log.read_text()
        assert stop(worker) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert stored_at_kill < 1200
    expected = {event["event_id"] for event in first_half + second_half}
    assert {str(event_id) for event_id in AuditEntry.objects.values_list("event_id", flat=True)} == expected
    assert AuditEntry.objects.count() == 1200
    assert ProcessedEvent.objects.filter(consumer_group=group_name("audit-service")).count() == 1200


def test_sigterm_stops_the_consumer_cleanly_with_its_offsets_committed(worker_env, tmp_path):
    events = [task_event() for _ in range(50)]
    TestProducer().events(events)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log)
    try:
        assert wait_for(lambda: AuditEntry.objects.count() == 50, timeout=90), log.read_text()
        assert stop(worker, signal.SIGTERM) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert committed_offsets(group_name("audit-service"), TASK_EVENTS) == end_offsets(TASK_EVENTS)
    assert "stopped cleanly" in log.read_text()


def test_sigint_stops_the_consumer_cleanly_too(worker_env, tmp_path):
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env, log)
    try:
        assert wait_for(lambda: "reading" in log.read_text(), timeout=60), log.read_text()
        assert stop(worker, signal.SIGINT) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_running_consumer_serves_metrics_and_healthz_on_metrics_port(worker_env, tmp_path, free_port):
    event = task_event()
    TestProducer().event(event)
    log = tmp_path / "worker.log"
    worker = start_worker({**worker_env, "METRICS_PORT": str(free_port), "METRICS_ADDR": "127.0.0.1"}, log)

    def get(path):
        with urlopen(f"http://127.0.0.1:{free_port}{path}", timeout=5) as response:
            return response.status, response.read().decode()

    try:
        assert wait_for(lambda: AuditEntry.objects.filter(event_id=event["event_id"]).exists(), timeout=90), log.read_text()
        metrics = lambda: get("/metrics")[1]  # noqa: E731
        assert wait_for(lambda: 'todo_consumer_processed_total{consumer="audit"} 1.0' in metrics(), timeout=10), metrics()
        assert 'todo_consumer_processing_seconds_count{consumer="audit"} 1.0' in metrics()
        assert wait_for(lambda: 'todo_consumer_lag{consumer="audit",partition=' in metrics(), timeout=30), metrics()
        status, body = get("/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert stop(worker) == 0
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_running_consumer_survives_json_nested_past_the_recursion_limit_and_handles_the_next_event(
    isolated_kafka, workers
):
    # The case: b"[" * 5000 made json.loads raise RecursionError, and every group crash-looped.
    key = str(uuid.uuid4())
    after = task_event(task_id=key)
    producer = TestProducer()
    producer.raw(TASK_EVENTS, b"[" * 5000, key=key)
    producer.event(after)
    worker = workers(["run_consumer", "audit"])

    assert wait_for(lambda: AuditEntry.objects.filter(event_id=after["event_id"]).exists(), timeout=90), worker.log()
    assert worker.process.poll() is None, worker.log()
    [letter] = read_topic(TASK_EVENTS + ".dlq", until=lambda messages: len(messages) >= 1)
    assert letter["value"] == b"[" * 5000 and letter["headers"]["dlq.attempts"] == "0"
    assert worker.stop() == 0, worker.log()


def test_run_consumer_refuses_an_unknown_consumer_name():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("run_consumer", "nonexistent")
