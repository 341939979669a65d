"""Optimistic concurrency (CONTRACT.md section 7): ETag is the version, a stale If-Match is a 412.

The check happens inside the service's row lock: of writers that read the same version, exactly
one wins however they interleave, and the losers change nothing and learn the current task.
"""

import threading

import pytest
from django.db import connections
from rest_framework.test import APIClient

from events.models import OutboxEvent
from tasks.accounts import tokens
from tasks.chat.executor import SOURCE, execute_tool
from tasks.chat.tools import ToolError
from tasks.events import EventContext
from tasks.models import Task, User

pytestmark = pytest.mark.django_db(transaction=True)


def create(client, **fields):
    response = client.post("/api/tasks/", {"title": "Plan the trip", **fields}, format="json")
    assert response.status_code == 201, response.json()
    return response


def url(task, suffix=""):
    return f"/api/tasks/{task['id']}/{suffix}"


def test_every_task_response_carries_its_version_as_etag(alice):
    created = create(alice)
    task = created.json()
    assert created["ETag"] == '"1"'
    assert alice.get(url(task))["ETag"] == '"1"'
    assert alice.patch(url(task), {"title": "Plan the holiday"}, format="json")["ETag"] == '"2"'
    assert alice.put(url(task), {"title": "Plan the holidays"}, format="json")["ETag"] == '"3"'
    completed = alice.post(url(task, "complete/"))
    assert completed["ETag"] == '"4"' and completed.json()["version"] == 4
    assert alice.post(url(task, "reopen/"))["ETag"] == '"5"'


def test_a_write_with_the_current_version_applies(alice):
    task = create(alice).json()
    response = alice.patch(url(task), {"title": "Plan the holiday"}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 200 and response.json()["title"] == "Plan the holiday"
    assert response["ETag"] == '"2"'


def test_a_stale_patch_is_a_412_with_the_current_task_and_changes_nothing(alice):
    task = create(alice).json()
    alice.patch(url(task), {"title": "Plan the holiday"}, format="json", HTTP_IF_MATCH='"1"')
    events_before = OutboxEvent.objects.count()

    stale = alice.patch(url(task), {"description": "Book the ferry"}, format="json", HTTP_IF_MATCH='"1"')

    assert stale.status_code == 412
    assert stale["ETag"] == '"2"'
    body = stale.json()
    assert (body["id"], body["title"], body["description"], body["version"]) == (task["id"], "Plan the holiday", "", 2)
    stored = Task.objects.get(pk=task["id"])
    assert (stored.title, stored.description, stored.version) == ("Plan the holiday", "", 2)
    assert OutboxEvent.objects.count() == events_before


@pytest.mark.parametrize(
    "method, suffix",
    [("put", ""), ("delete", ""), ("post", "complete/")],
)
def test_every_write_refuses_a_stale_version(alice, method, suffix):
    task = create(alice).json()
    alice.patch(url(task), {"title": "Plan the holiday"}, format="json")
    events_before = OutboxEvent.objects.count()

    response = getattr(alice, method)(url(task, suffix), {"title": "Mine"}, format="json", HTTP_IF_MATCH='"1"')

    assert response.status_code == 412 and response.json()["version"] == 2
    assert Task.objects.filter(pk=task["id"], version=2, title="Plan the holiday", completed=False).exists()
    assert OutboxEvent.objects.count() == events_before


def test_reopen_refuses_a_stale_version_and_delete_applies_with_the_current_one(alice):
    task = create(alice).json()
    alice.post(url(task, "complete/"))
    assert alice.post(url(task, "reopen/"), HTTP_IF_MATCH='"1"').status_code == 412
    assert Task.objects.get(pk=task["id"]).completed is True
    assert alice.delete(url(task), HTTP_IF_MATCH='"2"').status_code == 204
    assert not Task.objects.filter(pk=task["id"]).exists()


def test_without_if_match_or_with_a_star_a_write_applies_as_before(alice):
    task = create(alice).json()
    alice.patch(url(task), {"title": "Plan the holiday"}, format="json")
    assert alice.patch(url(task), {"description": "Ferry"}, format="json").status_code == 200
    assert alice.patch(url(task), {"description": "Train"}, format="json", HTTP_IF_MATCH="*").status_code == 200
    assert Task.objects.get(pk=task["id"]).version == 4


def test_a_weak_tag_names_the_same_version(alice):
    task = create(alice).json()
    assert alice.patch(url(task), {"title": "x"}, format="json", HTTP_IF_MATCH='W/"1"').status_code == 200
    assert alice.patch(url(task), {"title": "y"}, format="json", HTTP_IF_MATCH='W/"1"').status_code == 412


@pytest.mark.parametrize("header", ["1", '"one"', '"1", "2"', '"-1"', 'W/', '"99999999999999999999"'])
def test_a_malformed_if_match_is_a_400_naming_the_header(alice, header):
    task = create(alice).json()
    response = alice.patch(url(task), {"title": "x"}, format="json", HTTP_IF_MATCH=header)
    assert response.status_code == 400 and "If-Match" in response.json()
    assert Task.objects.get(pk=task["id"]).version == 1


def test_a_stale_write_on_another_users_task_is_a_404_not_a_412(alice, bob):
    task = create(alice).json()
    assert bob.patch(url(task), {"title": "x"}, format="json", HTTP_IF_MATCH='"7"').status_code == 404


def test_of_concurrent_writers_holding_one_version_exactly_one_wins(alice):
    writers = 6
    task = create(alice).json()
    token = tokens.issue(User.objects.get(username="alice"))
    start = threading.Barrier(writers)
    statuses = [None] * writers

    def write(index):
        client = APIClient()  # one per thread: each thread has its own database connection
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            start.wait(10)
            response = client.patch(url(task), {"description": f"writer {index}"}, format="json", HTTP_IF_MATCH='"1"')
            statuses[index] = (response.status_code, response.json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    codes = sorted(code for code, _ in statuses)
    assert codes == [200] + [412] * (writers - 1)
    winner = next(body for code, body in statuses if code == 200)
    stored = Task.objects.get(pk=task["id"])
    assert (stored.version, stored.description) == (2, winner["description"])
    assert all(body["description"] == winner["description"] for code, body in statuses if code == 412)


# ------------------------------------------------------------------------------------ chat tools


def run(user, name, **arguments):
    return execute_tool(user, name, arguments, context=EventContext(SOURCE, "corr-1"))


@pytest.mark.parametrize(
    "tool, arguments",
    [
        ("update_task", {"title": "Mine"}),
        ("update_task", {"completed": True}),
        ("update_task", {}),
        ("complete_task", {}),
        ("delete_task", {}),
    ],
)
def test_a_tool_call_with_a_stale_expected_version_is_a_tool_error_naming_the_current_version(tool, arguments):
    ada = User.objects.create_user("ada", password="pw-123456")
    task = run(ada, "add_task", title="Plan the trip")
    run(ada, "update_task", task_id=task["id"], title="Plan the holiday")

    with pytest.raises(ToolError, match="current version is 2, not 1"):
        run(ada, tool, task_id=task["id"], expected_version=1, **arguments)

    stored = Task.objects.get(pk=task["id"])
    assert (stored.title, stored.completed, stored.version) == ("Plan the holiday", False, 2)


def test_a_tool_call_with_the_current_expected_version_applies():
    ada = User.objects.create_user("ada", password="pw-123456")
    task = run(ada, "add_task", title="Plan the trip")
    updated = run(ada, "update_task", task_id=task["id"], title="Plan the holiday", completed=True, expected_version=1)
    assert (updated["title"], updated["completed"], updated["version"]) == ("Plan the holiday", True, 3)
    assert run(ada, "delete_task", task_title="Plan the holiday", expected_version=3)["id"] == task["id"]
    assert not Task.objects.filter(pk=task["id"]).exists()
