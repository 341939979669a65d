"""GET /api/audit/: the caller's own audit trail (CONTRACT.md section 2)."""

import uuid

import pytest
from rest_framework.test import APIClient

from tasks.models import User

pytestmark = pytest.mark.django_db


def test_the_trail_lists_only_the_callers_entries_newest_first_in_the_contract_shape(api, user, make_entry):
    other = User.objects.create_user(username="bob", password="a-long-password")
    older = make_entry(user.id, minutes=1)
    newer = make_entry(user.id, event_type="task.completed", minutes=2)
    make_entry(other.id, minutes=3)

    response = api.get("/api/audit/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [entry["event_id"] for entry in body["results"]] == [str(newer.event_id), str(older.event_id)]
    first = body["results"][0]
    assert set(first) == {"event_id", "event_type", "timestamp", "task_id", "data", "metadata"}
    assert first["event_type"] == "task.completed"
    assert first["timestamp"] == "2026-01-05T09:02:00Z"
    assert first["task_id"] == str(newer.task_id)
    assert first["data"] == newer.data and first["metadata"] == newer.metadata


def test_the_trail_filters_by_task_id_and_event_type(api, user, make_entry):
    task_id = uuid.uuid4()
    created = make_entry(user.id, task_id=task_id, minutes=1)
    completed = make_entry(user.id, task_id=task_id, event_type="task.completed", minutes=2)
    make_entry(user.id, minutes=3)

    by_task = api.get("/api/audit/", {"task_id": str(task_id)}).json()
    by_both = api.get("/api/audit/", {"task_id": str(task_id), "event_type": "task.created"}).json()

    assert [entry["event_id"] for entry in by_task["results"]] == [str(completed.event_id), str(created.event_id)]
    assert [entry["event_id"] for entry in by_both["results"]] == [str(created.event_id)]


def test_the_trail_is_paginated(api, user, make_entry):
    for minute in range(5):
        make_entry(user.id, minutes=minute)
    page = api.get("/api/audit/", {"page_size": 2}).json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]


def test_a_malformed_task_id_filter_is_a_400_not_a_500(api):
    response = api.get("/api/audit/", {"task_id": "not-a-uuid"})
    assert response.status_code == 400
    assert "task_id" in response.json()


def test_the_trail_needs_authentication():
    assert APIClient().get("/api/audit/").status_code == 401
