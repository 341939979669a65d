"""Hostile and odd input, and what it gets (CONTRACT.md section 7, "Sizes and shapes").

Each test is one input a public service receives sooner or later, sent through the door a
stranger would use, against the real PostgreSQL (and, for what only the ASGI server sees, a real
uvicorn process). The answer is always a 4xx that says what is wrong, never a 500, and nothing
of it reaches the outbox.
"""

import json
import threading
import time

import httpx
import pytest
from django.db import connection, transaction

import events.outbox
from events.models import OutboxEvent
from events.schemas import DESCRIPTION_MAX_LENGTH, MAX_TAGS, TAG_MAX_LENGTH, TITLE_MAX_LENGTH
from tasks import services
from tasks.events import EventContext
from tasks.models import Task
from testing.waits import wait_for
from tests.tasks.chat.test_mcp_server import registered
from tests.tasks.conftest import register

EVERY = {
    "hour": ",".join(str(hour) for hour in range(24)),
    "minute": ",".join(str(minute) for minute in range(60)),
    "second": ",".join(str(second) for second in range(60)),
}
ONE_MIB = 1024 * 1024


@pytest.fixture
def alice(db):
    return register("alice", timezone="Europe/Paris")


def post_task(client, body, **extra):
    return client.post("/api/tasks/", body, format="json", **extra)


def nothing_emitted():
    return not OutboxEvent.objects.exists()


# --- sizes ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"title": "x" * (TITLE_MAX_LENGTH + 1)}, "title"),
    ({"title": ""}, "title"),
    ({"title": "x", "description": "A" * (DESCRIPTION_MAX_LENGTH + 1)}, "description"),
    ({"title": "x", "description": "A" * 1_000_000}, "description"),  # the issue's: once a 201 that killed the relay
    ({"title": "x", "tags": [f"t{number}" for number in range(MAX_TAGS + 1)]}, "tags"),
    ({"title": "x", "tags": [f"t{number}" for number in range(10_000)]}, "tags"),
    ({"title": "x", "tags": ["t" * (TAG_MAX_LENGTH + 1)]}, "tags"),
])
def test_a_field_over_its_limit_is_a_400_naming_the_field_and_nothing_is_emitted(alice, body, field):
    response = post_task(alice, body)
    assert response.status_code == 400
    assert field in response.json()
    assert nothing_emitted()


def test_an_event_over_512_kib_fails_its_change_with_a_400_and_never_reaches_the_outbox(alice, monkeypatch):
    # Within the field limits no event comes near 512 KiB; a lower limit shows the path it takes.
    monkeypatch.setattr(events.outbox, "MAX_EVENT_BYTES", 2000)
    response = post_task(alice, {"title": "x", "description": "A" * 3000})
    assert response.status_code == 400
    assert "bytes" in response.json()["non_field_errors"][0]
    assert nothing_emitted() and not Task.objects.exists()


# --- shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"[" * 5000, b"{" * 5000, b'{"title": ' * 3000, b"\xff\xfe", b'{"title": "x"'])
def test_malformed_json_of_any_depth_is_a_400(alice, body):
    response = alice.post("/api/tasks/", body, content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_malformed_json_sent_to_the_chat_is_a_400(alice):
    response = alice.post("/api/chat/", b"[" * 5000, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(("body", "field"), [
    ({"title": 5}, "title"),
    ({"title": ["x"]}, "title"),
    ({"title": "x", "description": {"a": 1}}, "description"),
    ({"title": "x", "tags": [1, 2]}, "tags"),
    ({"title": "x", "tags": "shopping"}, "tags"),
    ({"title": "x", "due_date": 12}, "due_date"),
    ({"title": "x", "priority": "urgent"}, "priority"),
    ({"title": "x", "recurrence_rule": 7, "due_date": "2026-01-01T09:00:00Z"}, "recurrence_rule"),
])
def test_a_value_of_the_wrong_json_type_is_a_400_naming_the_field(alice, body, field):
    response = post_task(alice, body)
    assert response.status_code == 400
    assert field in response.json()


def test_a_body_that_is_not_an_object_is_a_400(alice):
    for body in (b"[]", b'"a task"', b"42", b"null"):
        assert alice.post("/api/tasks/", body, content_type="application/json").status_code == 400


@pytest.mark.parametrize("due_date", [
    "9999-12-31T23:00:00-05:00",  # UTC would be in year 10000
    "0001-01-01T00:30:00+05:00",  # UTC would be in year 0
    "99999-01-01T00:00:00Z",
    "2026-02-30T09:00:00Z",
])
def test_an_absurd_date_is_a_400_naming_it(alice, due_date):
    response = post_task(alice, {"title": "x", "due_date": due_date})
    assert response.status_code == 400
    assert "due_date" in response.json()


def test_the_last_representable_day_is_accepted_and_completes(alice):
    response = post_task(alice, {"title": "x", "due_date": "9999-12-31T09:00:00Z", "recurrence_rule": "FREQ=DAILY"})
    assert response.status_code == 201
    assert alice.post(f"/api/tasks/{response.json()['id']}/complete/").status_code == 200


# --- queries ----------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["page=99999999999999999999", "page=0", "page=-1", "page=abc", "page=1e9"])
def test_a_page_that_does_not_exist_is_a_404(alice, query):
    post_task(alice, {"title": "x"})
    assert alice.get(f"/api/tasks/?{query}").status_code == 404


@pytest.mark.parametrize("page_size", ["1000000", "99999999999999999999", "-1", "0", "abc"])
def test_page_size_abuse_gets_a_page_of_at_most_200(alice, page_size):
    post_task(alice, {"title": "x"})
    response = alice.get(f"/api/tasks/?page_size={page_size}")
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_a_filter_with_more_tags_than_a_task_can_carry_is_a_400_naming_it(alice):
    query = "&".join(f"tag=t{number}" for number in range(MAX_TAGS + 1))
    response = alice.get(f"/api/tasks/?{query}")
    assert response.status_code == 400
    assert "tag" in response.json()


def test_a_query_of_ten_thousand_parameters_is_a_400_that_says_so(alice):
    query = "&".join(f"tag=t{number}" for number in range(10_000))
    response = alice.get(f"/api/tasks/?{query}")
    assert response.status_code == 400
    assert "parameters" in response.json()["detail"]


# --- recurrence rules -------------------------------------------------------------------------

def test_the_issues_every_second_of_every_day_since_1900_is_refused_at_once(alice):
    rule = f"FREQ=DAILY;BYHOUR={EVERY['hour']};BYMINUTE={EVERY['minute']};BYSECOND={EVERY['second']}"
    started = time.perf_counter()
    response = post_task(alice, {"title": "x", "due_date": "1900-01-01T00:00:00Z", "recurrence_rule": rule})
    assert response.status_code == 400
    assert "BYSECOND" in response.json()["recurrence_rule"][0]
    assert time.perf_counter() - started < 1.0


def test_every_hour_since_1900_completes_at_once_and_its_next_task_is_due_within_the_hour(alice):
    created = post_task(alice, {"title": "x", "due_date": "1900-01-01T00:00:00Z",
                                "recurrence_rule": f"FREQ=DAILY;BYHOUR={EVERY['hour']}"})
    assert created.status_code == 201
    started = time.perf_counter()
    assert alice.post(f"/api/tasks/{created.json()['id']}/complete/").status_code == 200
    assert time.perf_counter() - started < 1.0


def test_a_rule_that_never_occurs_is_a_400_within_a_second(alice):
    rule = "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=" + ",".join(str(position) for position in range(100, 131))
    started = time.perf_counter()
    response = post_task(alice, {"title": "x", "due_date": "2026-01-05T09:00:00Z", "recurrence_rule": rule})
    assert response.status_code == 400
    assert "never produces" in response.json()["recurrence_rule"][0]
    assert time.perf_counter() - started < 1.0


# --- chat -------------------------------------------------------------------------------------

@pytest.fixture
def interpreter(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""


@pytest.mark.parametrize("message", [
    "add x in 99999999999 days", "add x in 99999999999 hours", "add x in 99999999999 months",
    "add x on 9999-12-31 remind me 1 week before every day",
])
def test_the_chat_answers_dates_out_of_range_in_words(alice, interpreter, message):
    response = alice.post("/api/chat/", {"message": message}, format="json")
    assert response.status_code == 200
    assert response.json()["reply"]


def test_the_chat_refuses_a_message_too_long_and_one_that_is_not_a_string(alice, interpreter):
    assert alice.post("/api/chat/", {"message": "x" * 2001}, format="json").status_code == 400
    assert alice.post("/api/chat/", {"message": {"text": "hi"}}, format="json").status_code == 400


# --- concurrent deletes and completions (PostgreSQL row locks, real threads) ------------------

def _requests_blocked_on_the_row(count, deadline=30.0):
    """Wait until ``count`` backends of this database wait for a lock (the test holds the row's)."""

    def blocked():
        with connection.cursor() as cursor:
            # Inside a transaction PostgreSQL reads its statistics views from one snapshot: renew it.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] >= count

    assert wait_for(blocked, deadline, interval=0.02), f"{count} requests did not reach the row lock"


def _in_threads(calls):
    """Run each call in its own thread (own database connection); their HTTP statuses."""
    statuses = [None] * len(calls)

    def run(index, call):
        try:
            statuses[index] = call().status_code
        except Exception as error:  # a crash is an answer too: the assertion shows it
            statuses[index] = repr(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, statuses


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("requests", "expected"), [
    (["delete"] * 4, [404] * 4),
    (["complete", "delete", "complete", "reopen"], [404] * 4),
])
def test_requests_that_wait_for_a_task_deleted_meanwhile_are_404s_never_500s(requests, expected):
    client = register("alice")
    task = Task.objects.get(pk=post_task(client, {"title": "contended"}).json()["id"])
    clients = [register(f"alice-{index}") for index in range(len(requests))]
    for other in clients:  # the same user's token: every request may act on the task
        other.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"])
    paths = {"delete": "", "complete": "complete/", "reopen": "reopen/"}
    calls = [
        (lambda other=other, name=name: other.delete(f"/api/tasks/{task.id}/") if name == "delete"
         else other.post(f"/api/tasks/{task.id}/{paths[name]}"))
        for other, name in zip(clients, requests, strict=True)
    ]
    with transaction.atomic():
        locked = Task.objects.select_for_update().get(pk=task.pk)
        threads, statuses = _in_threads(calls)  # each finds the task, then waits for its lock
        _requests_blocked_on_the_row(len(calls))
        services.task_delete(task=locked, context=EventContext.new("todo-api"))
    for thread in threads:
        thread.join(60)
    assert statuses == expected


@pytest.mark.django_db(transaction=True)
def test_four_concurrent_deletes_of_one_task_are_one_204_and_three_404s():
    client = register("alice")
    task_id = post_task(client, {"title": "contended"}).json()["id"]
    barrier = threading.Barrier(4)

    def delete():
        barrier.wait(10)
        return client.delete(f"/api/tasks/{task_id}/")

    threads, statuses = _in_threads([delete] * 4)
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [204, 404, 404, 404]


# --- what only the ASGI server sees: bodies over 1 MiB, on every route ------------------------

def _chunks(total, size=64 * 1024):
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize("path", ["/api/tasks/", "/mcp/", "/admin/login/", "/api/auth/token/", "/no-such-route/"])
def test_a_body_over_one_mib_is_a_413_on_every_route_by_length_or_chunked(web_server, path):
    _, token = registered("alice")
    # Authenticated, so that the route reads the body rather than refusing the stranger first.
    scheme = "Bearer" if path == "/mcp/" else "Token"
    headers = {"Authorization": f"{scheme} {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    by_length = httpx.post(f"{web_server}{path}", content=b"x" * (ONE_MIB + 1), headers=headers, timeout=30)
    chunked = httpx.post(f"{web_server}{path}", content=_chunks(2 * ONE_MIB), headers=headers, timeout=30)
    assert (by_length.status_code, chunked.status_code) == (413, 413)
    assert "larger than 1048576 bytes" in by_length.json()["detail"]


def test_a_body_just_under_one_mib_is_read_and_judged_on_its_content(web_server):
    _, token = registered("alice")
    body = json.dumps({"title": "x", "description": "A" * (ONE_MIB - 100)}).encode()
    assert len(body) <= ONE_MIB
    response = httpx.post(f"{web_server}/api/tasks/", content=body, timeout=30,
                          headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "description" in response.json()


def test_malformed_json_of_any_depth_sent_to_the_mcp_server_is_a_400(web_server):
    _, token = registered("alice")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    for body in (b"[" * 5000, b"{" * 5000, b'{"jsonrpc": "2.0", "method": ' * 2000):
        response = httpx.post(f"{web_server}/mcp/", content=body, headers=headers, timeout=30)
        assert response.status_code == 400, response.text
