"""A worker's /healthz turns 503 while its loop is stuck, and /metrics serves Prometheus text."""

import json
import threading
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from events.consumer import ConsumerRuntime
from events.registry import ConsumerSpec
from events.topics import TASK_EVENTS
from events.worker_http import start_worker_http_server
from testing.factories import task_event
from testing.kafka import TestProducer, running
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def healthz(port):
    try:
        with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def test_healthz_fails_while_a_handler_is_stuck_and_recovers_when_it_returns(isolated_kafka, free_port, settings):
    # The liveness limit derives from the handler budget and the dead-letter write timeout: here 0.8 s.
    settings.CONSUMER_HANDLER_TIMEOUT_SECONDS = 0.2
    settings.CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS = 0.2
    entered, release = threading.Event(), threading.Event()

    def stuck_handler(event):
        entered.set()
        release.wait(60)

    runtime = ConsumerRuntime(ConsumerSpec(name="stuck", topic=TASK_EVENTS, group="stuck", handler=stuck_handler))
    server = start_worker_http_server(free_port, runtime.health, addr="127.0.0.1")
    try:
        with running(runtime):
            assert wait_for(lambda: healthz(free_port)[0] == 200, timeout=10)
            TestProducer().event(task_event())
            # Outside the main thread no signal cuts the handler (run_consumer runs it in the main thread).
            assert entered.wait(60)
            assert wait_for(lambda: healthz(free_port)[0] == 503, timeout=10)
            status, body = healthz(free_port)  # still stuck: nothing released it yet
            assert status == 503 and body["status"] == "unavailable" and "stuck" in body["detail"]
            release.set()
            assert wait_for(lambda: healthz(free_port)[0] == 200, timeout=10)
        with urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=5) as response:
            assert 'todo_consumer_processed_total{consumer="stuck"} 1.0' in response.read().decode()
    finally:
        release.set()
        server.shutdown()
