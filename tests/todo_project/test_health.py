"""Probes: /healthz says the process serves, /readyz checks every dependency and names failures."""

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_database_redis_and_kafka_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "kafka": "ok"}}


def test_readyz_is_503_naming_kafka_when_the_broker_is_unreachable(client, settings, free_port):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port}"
    settings.READINESS_TIMEOUT_SECONDS = 1
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["kafka"].startswith("error")
    assert checks["database"] == "ok" and checks["redis"] == "ok"


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings, free_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")
    assert response.json()["checks"]["kafka"] == "ok"


def test_metrics_are_served_in_prometheus_text_format(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"python_info" in response.content
