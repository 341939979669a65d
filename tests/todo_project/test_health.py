"""Probes: /healthz says the process serves; /readyz of the web process names each dependency's
state and is ready while the database answers (a Kafka or Redis outage is reported, not fatal:
the outbox absorbs it). What a stranger learns from them: tests/security/test_probes.py."""

import pytest

from events.transports.kafka.admin import probe_client
from testing.waits import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def uncached_readiness(settings):
    """Each request runs the checks (the one-second reuse has a test of its own)."""
    settings.READINESS_CACHE_SECONDS = 0


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_database_redis_and_kafka_answer(client, kafka_namespace):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "kafka": "ok"}}


def test_a_kafka_outage_is_reported_but_leaves_the_web_process_ready(client, settings, free_port):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port}"
    settings.READINESS_TIMEOUT_SECONDS = 1
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "kafka": "error"}}


def test_a_redis_outage_is_reported_but_leaves_the_web_process_ready(client, settings, free_port, kafka_namespace):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port}/0"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "error", "kafka": "ok"}}


def test_readyz_reuses_its_answer_for_a_second_then_checks_again(client, settings, free_port, kafka_namespace):
    settings.READINESS_CACHE_SECONDS = 1
    assert client.get("/readyz").json()["checks"]["kafka"] == "ok"
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port}"
    settings.READINESS_TIMEOUT_SECONDS = 0.5
    # Within the second, the answer is the one already given: no new round of checks.
    assert client.get("/readyz").json()["checks"]["kafka"] == "ok"
    assert wait_for(lambda: client.get("/readyz").json()["checks"]["kafka"] == "error", timeout=10), (
        "readyz never checked Kafka again"
    )


def test_readiness_asks_one_long_lived_kafka_client_not_a_new_one_per_probe(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert probe_client(timeout=2) is probe_client(timeout=2)


def test_metrics_are_served_in_prometheus_text_format(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"python_info" in response.content
