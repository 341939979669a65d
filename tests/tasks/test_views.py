"""The tasks' REST API of CONTRACT.md section 2: tasks, validation, isolation, correlation ids."""

import uuid

import pytest
from rest_framework.test import APIClient

from events.models import OutboxEvent
from tasks.models import Task

pytestmark = pytest.mark.django_db


def create(client, **fields):
    response = client.post("/api/tasks/", {"title": "A task", **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_every_task_endpoint_needs_authentication():
    client = APIClient()
    task_url = f"/api/tasks/{uuid.uuid4()}/"
    assert client.get("/api/tasks/").status_code == 401
    assert client.post("/api/tasks/", {"title": "x"}, format="json").status_code == 401
    assert client.get(task_url).status_code == 401
    assert client.post(task_url + "complete/").status_code == 401
    assert client.get("/api/auth/me/").status_code == 401


# ----------------------------------------------------------------------------------------- tasks


def test_create_returns_the_task_object_of_the_contract(alice):
    task = create(
        alice, title="Buy groceries", due_date="2025-12-20T18:00:00Z", remind_at="2025-12-20T17:00:00+00:00",
        priority=1, recurrence_rule="FREQ=WEEKLY;BYDAY=MO", tags=["shopping", "personal"],
    )
    assert set(task) == {
        "id", "title", "description", "completed", "completed_at", "due_date", "remind_at", "priority",
        "recurrence_rule", "tags", "parent_task_id", "user_id", "version", "created_at", "updated_at",
    }
    assert task["due_date"] == "2025-12-20T18:00:00Z" and task["remind_at"] == "2025-12-20T17:00:00Z"
    assert task["version"] == 1 and task["priority"] == 1 and task["completed"] is False
    assert task["created_at"].endswith("Z") and isinstance(task["user_id"], str)


def test_a_naive_time_is_read_in_the_users_time_zone(alice):
    task = create(alice, due_date="2025-07-01T09:00:00")  # Paris is UTC+2 in summer
    assert task["due_date"] == "2025-07-01T07:00:00Z"


def test_priority_defaults_to_four_and_title_is_required(alice):
    assert create(alice)["priority"] == 4
    response = alice.post("/api/tasks/", {}, format="json")
    assert response.status_code == 400 and "title" in response.json()


def test_get_patch_put_complete_reopen_and_delete_a_task(alice):
    task = create(alice, title="Draft", tags=["a"])
    url = f"/api/tasks/{task['id']}/"
    assert alice.get(url).json()["title"] == "Draft"
    patched = alice.patch(url, {"title": "Final"}, format="json").json()
    assert patched["title"] == "Final" and patched["tags"] == ["a"] and patched["version"] == 2
    put = alice.put(url, {"title": "Replaced"}, format="json").json()
    assert put["title"] == "Replaced" and put["tags"] == [] and put["version"] == 3
    completed = alice.post(url + "complete/").json()
    assert completed["completed"] is True and completed["completed_at"].endswith("Z")
    again = alice.post(url + "complete/")
    assert again.status_code == 200 and again.json()["version"] == completed["version"]
    reopened = alice.post(url + "reopen/").json()
    assert reopened["completed"] is False and reopened["completed_at"] is None
    assert alice.delete(url).status_code == 204
    assert alice.get(url).status_code == 404


def test_completing_a_completed_task_writes_no_new_event(alice):
    task = create(alice)
    alice.post(f"/api/tasks/{task['id']}/complete/")
    before = OutboxEvent.objects.count()
    assert alice.post(f"/api/tasks/{task['id']}/complete/").status_code == 200
    assert OutboxEvent.objects.count() == before


def test_list_filters_by_completed_priority_every_tag_search_and_due_window(alice):
    a = create(alice, title="Buy milk", priority=1, tags=["home", "food"], due_date="2025-01-10T10:00:00Z")
    b = create(alice, title="Write report", description="quarterly MILK numbers", priority=2, tags=["work"])
    c = create(alice, title="Cook", priority=1, tags=["home"], due_date="2025-02-10T10:00:00Z")
    alice.post(f"/api/tasks/{c['id']}/complete/")

    def ids(query):
        response = alice.get("/api/tasks/" + query)
        assert response.status_code == 200, response.json()
        return {task["id"] for task in response.json()["results"]}

    assert ids("?completed=true") == {c["id"]}
    assert ids("?completed=false") == {a["id"], b["id"]}
    assert ids("?priority=1") == {a["id"], c["id"]}
    assert ids("?tag=home") == {a["id"], c["id"]}
    assert ids("?tag=home&tag=food") == {a["id"]}
    assert ids("?search=milk") == {a["id"], b["id"]}
    assert ids("?due_before=2025-02-01T00:00:00Z") == {a["id"]}
    assert ids("?due_after=2025-02-01T00:00:00Z") == {c["id"]}


def test_list_orders_and_paginates(alice):
    for title, priority in [("b", 3), ("a", 1), ("c", 2)]:
        create(alice, title=title, priority=priority)
    titles = [t["title"] for t in alice.get("/api/tasks/?ordering=title").json()["results"]]
    assert titles == ["a", "b", "c"]
    priorities = [t["priority"] for t in alice.get("/api/tasks/?ordering=-priority").json()["results"]]
    assert priorities == [3, 2, 1]
    page = alice.get("/api/tasks/?ordering=title&page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"] and page["previous"] is None
    second = alice.get(page["next"]).json()
    assert [t["title"] for t in second["results"]] == ["c"]


@pytest.mark.parametrize(
    "query", ["?ordering=owner", "?priority=9", "?completed=maybe", "?due_before=yesterday", "?page_size=x&page=x"]
)
def test_bad_list_parameters_are_a_400_or_404_never_a_500(alice, query):
    assert alice.get("/api/tasks/" + query).status_code in (400, 404)


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 12}, "title"),
        ({"due_date": "next tuesday"}, "due_date"),
        ({"due_date": "2025-13-45T10:00:00Z"}, "due_date"),
        ({"due_date": 1700000000}, "due_date"),
        ({"due_date": "9999-12-31T23:59:59-10:00"}, "due_date"),
        ({"recurrence_rule": "FREQ=SOMETIMES", "due_date": "2025-12-20T18:00:00Z"}, "recurrence_rule"),
        ({"recurrence_rule": "every monday", "due_date": "2025-12-20T18:00:00Z"}, "recurrence_rule"),
        (
            {"recurrence_rule": "DTSTART:20250101T000000Z\nRRULE:FREQ=DAILY", "due_date": "2025-12-20T18:00:00Z"},
            "recurrence_rule",
        ),
        ({"recurrence_rule": "FREQ=DAILY"}, "recurrence_rule"),
        ({"remind_at": "2025-12-20T17:00:00Z"}, "remind_at"),
        ({"remind_at": "2025-12-20T19:00:00Z", "due_date": "2025-12-20T18:00:00Z"}, "remind_at"),
        ({"priority": 0}, "priority"),
        ({"priority": 5}, "priority"),
        ({"priority": 10**30}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"tags": "work"}, "tags"),
        ({"tags": [1, 2]}, "tags"),
        ({"tags": [["nested"]]}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"tags": [str(i) for i in range(21)]}, "tags"),
    ],
)
def test_invalid_fields_are_a_400_naming_the_field_and_emit_nothing(alice, fields, field):
    response = alice.post("/api/tasks/", {"title": "A task", **fields}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not OutboxEvent.objects.exists()


def test_parent_task_id_is_not_input_only_the_recurring_service_sets_it(alice):
    response = alice.post("/api/tasks/", {"title": "A task", "parent_task_id": str(uuid.uuid4())}, format="json")
    assert response.status_code == 201
    assert response.json()["parent_task_id"] is None


def test_a_patch_is_validated_against_the_whole_resulting_task(alice):
    task = create(alice, due_date="2025-12-20T18:00:00Z", remind_at="2025-12-20T17:00:00Z")
    response = alice.patch(f"/api/tasks/{task['id']}/", {"due_date": None}, format="json")
    assert response.status_code == 400 and "remind_at" in response.json()
    assert alice.get(f"/api/tasks/{task['id']}/").json()["version"] == 1


@pytest.mark.parametrize(
    "body, content_type",
    [("{not json", "application/json"), ("[1, 2]", "application/json"), ("null", "application/json"),
     ('{"title": "' + "9" * 5000 + '"}', "application/json"), ('{"priority": ' + "9" * 5000 + "}", "application/json"),
     ("title=x", "text/plain")],
)
def test_malformed_bodies_are_a_4xx_never_a_500(alice, body, content_type):
    response = alice.generic("POST", "/api/tasks/", body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content


# ------------------------------------------------------------------------------------- isolation


def test_another_users_task_is_a_404_on_every_endpoint_and_emits_nothing(alice, bob):
    task = create(alice, due_date="2025-12-20T18:00:00Z", remind_at="2025-12-20T17:00:00Z")
    url = f"/api/tasks/{task['id']}/"
    before = OutboxEvent.objects.count()
    assert bob.get(url).status_code == 404
    assert bob.patch(url, {"title": "mine"}, format="json").status_code == 404
    assert bob.put(url, {"title": "mine"}, format="json").status_code == 404
    assert bob.post(url + "complete/").status_code == 404
    assert bob.post(url + "reopen/").status_code == 404
    assert bob.delete(url).status_code == 404
    assert bob.get("/api/tasks/").json()["count"] == 0
    assert OutboxEvent.objects.count() == before
    assert Task.objects.get(pk=task["id"]).version == 1


def test_an_unknown_task_id_is_a_404(alice):
    assert alice.get(f"/api/tasks/{uuid.uuid4()}/").status_code == 404
    assert alice.get("/api/tasks/not-a-uuid/").status_code == 404


# ------------------------------------------------------------------------------ correlation ids


def test_the_request_id_is_echoed_and_becomes_the_events_correlation_id(alice):
    response = alice.post("/api/tasks/", {"title": "Traced"}, format="json", HTTP_X_REQUEST_ID="req-abc-123")
    assert response["X-Request-ID"] == "req-abc-123"
    payloads = OutboxEvent.objects.values_list("payload", flat=True)
    assert payloads and all('"correlation_id":"req-abc-123"' in payload for payload in payloads)


def test_without_a_request_id_one_is_made_and_shared_by_all_events_of_the_request(alice):
    response = alice.post("/api/tasks/", {"title": "Traced", "due_date": "2030-01-01T00:00:00Z",
                                          "remind_at": "2030-01-01T00:00:00Z"}, format="json")
    correlation_id = response["X-Request-ID"]
    uuid.UUID(correlation_id)
    payloads = list(OutboxEvent.objects.values_list("payload", flat=True))
    assert len(payloads) == 3 and all(correlation_id in payload for payload in payloads)


def test_the_openapi_schema_and_docs_are_served(alice):
    schema = alice.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/tasks/{task_id}/complete/" in schema.content
    assert alice.get("/api/docs/").status_code == 200


def test_the_admin_shows_tasks_but_cannot_change_them(alice, admin_client):
    task = create(alice, title="Visible")
    page = admin_client.get(f"/admin/tasks/task/{task['id']}/change/")
    assert page.status_code == 200 and b"Visible" in page.content
    assert admin_client.post(f"/admin/tasks/task/{task['id']}/delete/", {"post": "yes"}).status_code == 403
    assert Task.objects.filter(pk=task["id"]).exists()
