"""Another user, signed in with a valid token of their own: what of alice's can bob reach? Nothing.

REST on tasks is covered endpoint by endpoint in tests/tasks/test_views.py
(test_another_users_task_is_a_404_on_every_endpoint_and_emits_nothing); this module covers the
doors around it: the audit trail, notifications, the sync log and the chat assistant.
"""

import uuid

import pytest
from django.db import transaction

from notifications.services import deliver_reminder
from tasks.models import Task, User
from tests.tasks.conftest import register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice():
    client = register("alice")
    task = client.post("/api/tasks/", {"title": "alice's secret plan", "due_date": "2030-01-01T09:00:00Z"},
                       format="json").json()
    return client, task


@pytest.fixture
def bob():
    return register("bob")


def test_bob_sees_none_of_alices_audit_trail_even_naming_her_task(alice, bob):
    _, task = alice
    assert bob.get("/api/audit/").json()["results"] == []
    assert bob.get(f"/api/audit/?task_id={task['id']}").json()["results"] == []


def test_bob_sees_none_of_alices_changes_in_the_sync_log(alice, bob):
    _, task = alice
    changes = bob.get("/api/sync/").json()["changes"]
    assert task["id"] not in {change["data"]["task_id"] for change in changes}


def test_bob_can_neither_list_nor_mark_read_alices_notifications(alice, bob):
    client, task = alice
    with transaction.atomic():
        notification = deliver_reminder(user=User.objects.get(username="alice"), reminder_id=str(uuid.uuid4()),
                                        task_id=task["id"], title=task["title"], due_at=None)
    assert bob.get("/api/notifications/").json()["results"] == []
    assert bob.post(f"/api/notifications/{notification.id}/read/").status_code == 404
    assert client.get("/api/notifications/").json()["results"][0]["read"] is False


def test_the_assistant_finds_only_bobs_own_tasks_by_their_title(alice, bob):
    _, task = alice
    reply = bob.post("/api/chat/", {"message": "mark alice's secret plan as done"}, format="json")
    assert reply.status_code == 200
    assert not any(call.get("result", {}).get("id") == task["id"] for call in reply.json()["tool_calls"])
    assert Task.objects.get(pk=task["id"]).completed is False
