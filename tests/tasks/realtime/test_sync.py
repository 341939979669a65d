"""GET /api/sync/?since=<cursor>: a user's task changes after a cursor, deletions included."""

import pytest
from rest_framework.test import APIClient

from tasks import sync

pytestmark = pytest.mark.django_db


def create(client, title="A task"):
    response = client.post("/api/tasks/", {"title": title}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def changes(client, since=None):
    response = client.get("/api/sync/", {} if since is None else {"since": since})
    assert response.status_code == 200, response.json()
    return response.json()


def summary(body):
    return [(c["data"]["change_type"], c["data"]["task"]["title"], c["data"]["task"]["version"]) for c in body["changes"]]


def test_without_since_every_change_of_mine_is_returned_in_order_as_sync_events(alice):
    task = create(alice, "Buy milk")
    alice.patch(f"/api/tasks/{task['id']}/", {"title": "Buy oat milk"}, format="json")
    alice.post(f"/api/tasks/{task['id']}/complete/")

    body = changes(alice)

    assert summary(body) == [("created", "Buy milk", 1), ("updated", "Buy oat milk", 2), ("updated", "Buy oat milk", 3)]
    assert all(c["event_type"] == "sync.task_changed" for c in body["changes"])
    assert body["changes"][-1]["data"]["task"]["completed"] is True
    assert body["has_more"] is False


def test_since_a_cursor_only_later_changes_are_returned_deletions_included(alice):
    kept, gone = create(alice, "Kept"), create(alice, "Gone")
    cursor = changes(alice)["cursor"]

    alice.patch(f"/api/tasks/{kept['id']}/", {"priority": 1}, format="json")
    assert alice.delete(f"/api/tasks/{gone['id']}/").status_code == 204
    body = changes(alice, since=cursor)

    assert summary(body) == [("updated", "Kept", 2), ("deleted", "Gone", 2)]
    assert body["changes"][1]["data"]["task_id"] == gone["id"]
    # Nothing new: the same cursor comes back and no changes.
    assert changes(alice, since=body["cursor"]) == {"changes": [], "cursor": body["cursor"], "has_more": False}


def test_another_users_changes_are_never_returned(alice, bob):
    create(alice, "Alice's")
    create(bob, "Bob's")
    assert summary(changes(alice)) == [("created", "Alice's", 1)]
    assert summary(changes(bob)) == [("created", "Bob's", 1)]


def test_a_long_history_comes_in_pages_that_end_with_has_more_false(alice, monkeypatch):
    monkeypatch.setattr(sync, "MAX_CHANGES_PER_PAGE", 2)
    for number in range(5):
        create(alice, f"Task {number}")
    titles, cursor, has_more = [], None, True
    while has_more:
        body = changes(alice, since=cursor)
        titles += [title for _, title, _ in summary(body)]
        cursor, has_more = body["cursor"], body["has_more"]
    assert titles == [f"Task {number}" for number in range(5)]


@pytest.mark.parametrize("since", ["yesterday", "-1", "1.5"])
def test_a_malformed_cursor_is_a_400_naming_since(alice, since):
    response = alice.get("/api/sync/", {"since": since})
    assert response.status_code == 400
    assert "since" in response.json()


def test_without_credentials_it_is_a_401():
    assert APIClient().get("/api/sync/").status_code == 401
