"""The /dapr/ door: Dapr deliveries write into users' accounts, so only the sidecar may knock.

Threat: a stranger who reaches a pod POSTs a well-formed ``reminder.due`` (or any event) naming
someone else's user_id to /dapr/events/<consumer>, or sends bodies built to crash the parser.
What they get: the web application has no /dapr/ routes at all; the delivery application of the
delivery pods refuses to start without a token, answers 401 to any /dapr/ request without the
sidecar's dapr-api-token before a handler runs, and turns hostile bodies into dead letters or a
retry, never a 500.
"""

import base64
import json
import uuid

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from events.schemas import make_event, utc_timestamp
from events.topics import TASK_EVENTS, topic_name
from notifications.models import Notification
from tasks.models import User
from tests.events.dapr_helpers import APP_API_TOKEN
from testing.factories import task_event
from testing.processes import Process, program, worker_environment
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def victim():
    return User.objects.create_user("victim", password="a-long-passphrase")


def forged_reminder(user):
    """The issue's forgery: a well-formed reminder.due that no scheduler fired."""
    now = utc_timestamp(timezone.now())
    data = {"reminder_id": str(uuid.uuid4()), "task_id": str(uuid.uuid4()), "title": "Pay evil.example now",
            "due_at": now, "remind_at": now, "user_id": str(user.id)}
    return make_event("reminder.due", data, source="reminder-scheduler", correlation_id="forged")


def body(event):
    return json.dumps(event).encode()


# --- the web application -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/dapr/subscribe", "/dapr/config", "/dapr/events/notifications"])
def test_the_web_application_has_no_dapr_routes_even_with_the_dapr_transport(settings, victim, path):
    settings.EVENT_TRANSPORT = "dapr"
    settings.DAPR_APP_API_TOKEN = APP_API_TOKEN
    client = Client()
    headers = {"dapr-api-token": APP_API_TOKEN}
    assert client.get(path, headers=headers).status_code == 404
    assert client.post(path, body(forged_reminder(victim)), content_type="application/json",
                       headers=headers).status_code == 404
    assert not Notification.objects.exists()


# --- the delivery application: who may knock -----------------------------------------------------

def test_an_anonymous_forged_reminder_is_refused_and_nothing_reaches_the_account(dapr_delivery, dapr_sidecar, victim):
    response = dapr_delivery.post("/dapr/events/notifications", body(forged_reminder(victim)), token=None)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong dapr-api-token"}
    assert not Notification.objects.filter(user=victim).exists()
    assert dapr_sidecar.requests == []  # not even a dead letter: no handler ran


@pytest.mark.parametrize("token", ["", "wrong", APP_API_TOKEN[:-1], APP_API_TOKEN + "x", APP_API_TOKEN.upper()])
def test_a_wrong_token_is_refused_on_every_dapr_route(dapr_delivery, dapr_sidecar, token):
    event = task_event()
    assert dapr_delivery.post("/dapr/events/audit", body(event), token=token).status_code == 401
    assert dapr_delivery.get("/dapr/subscribe", token=token).status_code == 401
    assert dapr_delivery.get("/dapr/config", token=token).status_code == 401
    assert dapr_delivery.get("/dapr/anything-else", token=token).status_code == 401
    assert not AuditEntry.objects.exists()


def test_the_sidecars_token_lets_its_delivery_through(dapr_delivery, dapr_sidecar):
    event = task_event()
    response = dapr_delivery.post("/dapr/events/audit", body(event))
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    assert AuditEntry.objects.filter(event_id=event["event_id"]).exists()


def test_the_probes_need_no_token(dapr_delivery):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert dapr_delivery.get(path, token=None).status_code == 200, path


# --- the delivery application: hostile bodies ------------------------------------------------------

def cloud_event(**fields):
    return json.dumps({"specversion": "1.0", "id": "x", "type": "com.dapr.event.sent", **fields}).encode()


HOSTILE_BODIES = {
    "5000 open brackets": b"[" * 5000,
    "not json": b"\x00\xff{{{ not json",
    "bad utf-8": b'{"event_type": "\xff\xfe"}',
    "a json number": b"42",
    "a json list of events": body([task_event(logged=False)]),
    "bad base64": cloud_event(data_base64="%%% not base64 %%%"),
    "base64 of junk": cloud_event(data_base64=base64.b64encode(b"[" * 5000).decode()),
    "data nested 5000 deep": cloud_event(data="[" * 5000),
    "data with a lone surrogate": b'{"specversion": "1.0", "data": "\\ud800"}',
    "2 MB": json.dumps({"event_type": "task.created", "data": {"title": "A" * 2_000_000}}).encode(),
}


@pytest.mark.parametrize("payload", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_a_hostile_body_never_yields_a_500_nor_an_effect(dapr_delivery, dapr_sidecar, payload):
    response = dapr_delivery.post("/dapr/events/audit", payload)
    # Dead-lettered and acknowledged (200), refused as too large (400/413), or retried (503) until
    # Dapr's deadLetterTopic keeps it; never a crash.
    assert response.status_code in {200, 400, 413, 503}, response.text
    if response.status_code in {200, 503}:
        assert response.json()["status"] in {"SUCCESS", "RETRY"}
    assert not AuditEntry.objects.exists()


def test_an_envelope_whose_topic_is_not_a_string_is_recorded_under_the_consumers_own_topic(
    dapr_delivery, dapr_sidecar
):
    event = task_event()
    response = dapr_delivery.post("/dapr/events/audit", cloud_event(topic=["reminders"], data=event))
    assert (response.status_code, response.json()) == (200, {"status": "SUCCESS"})
    assert AuditEntry.objects.get(event_id=event["event_id"]).topic == topic_name(TASK_EVENTS)


# --- the delivery application as the delivery pods run it -----------------------------------------

def delivery_process(tmp_path, port, **env):
    command = ["uvicorn", "todo_project.delivery_asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    return Process(program(*command), tmp_path / "delivery.log", worker_environment(**env)).start()


@pytest.mark.e2e  # starts a server process in its body
@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVENT_TRANSPORT": "dapr", "DAPR_APP_API_TOKEN": "", "APP_API_TOKEN": ""}, "DAPR_APP_API_TOKEN"),
        ({"EVENT_TRANSPORT": "kafka", "DAPR_APP_API_TOKEN": "s3cret"}, "EVENT_TRANSPORT=dapr"),
    ],
    ids=["no token", "kafka transport"],
)
def test_the_delivery_application_refuses_to_start_and_says_what_to_set(tmp_path, free_port, env, named):
    process = delivery_process(tmp_path, free_port, **env)
    assert wait_for(lambda: process.process.poll() is not None, timeout=60), "it started anyway"
    assert process.process.returncode != 0
    assert "ImproperlyConfigured" in process.log() and named in process.log()


@pytest.mark.e2e  # starts a server process in its body
def test_the_delivery_process_serves_probes_and_refuses_tokenless_deliveries(tmp_path, free_port, victim):
    process = delivery_process(
        tmp_path, free_port, EVENT_TRANSPORT="dapr", DAPR_APP_API_TOKEN="s3cret", DAPR_CONSUMERS="notifications"
    )
    url = f"http://127.0.0.1:{free_port}"

    def serving():
        assert process.process.poll() is None, process.log()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(serving, timeout=60), process.log()
        forged = httpx.post(f"{url}/dapr/events/notifications", content=body(forged_reminder(victim)),
                            headers={"content-type": "application/json"}, timeout=10)
        assert forged.status_code == 401
        config = httpx.get(f"{url}/dapr/config", headers={"dapr-api-token": "s3cret"}, timeout=10)
        assert (config.status_code, config.json()) == (200, {"entities": []})
        # Only the web app's routes are gone from here: no admin, no API on a delivery pod.
        assert httpx.get(f"{url}/api/tasks/", timeout=10).status_code == 404
        assert not Notification.objects.filter(user=victim).exists()
    finally:
        process.stop()
