"""Browsing the audit trail as a person would: usernames and links, the viewer's clock with its
zone named, a before/after of each change, and the task's reminder deliveries."""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from events.models import OutboxEvent
from events.topics import TASK_EVENTS
from notifications.models import Notification, OutgoingEmail
from tasks.events import EventContext
from tasks.models import User
from tasks.services import task_complete, task_create, task_delete, task_update

pytestmark = pytest.mark.django_db

API = EventContext(source="todo-api", correlation_id="admin-test")
CHANGELIST = reverse("admin:audit_auditentry_changelist")


@pytest.fixture
def viewer(client):
    """A superuser in Tokyo (UTC+9, no daylight saving), signed in to the admin."""
    user = User.objects.create_superuser("root", "root@example.com", "a-long-password", timezone="Asia/Tokyo")
    client.force_login(user)
    return client


@pytest.fixture
def owner():
    return User.objects.create_user("marguerite", password="pw-123456")


def audited(task_id):
    """The audit entries of the task's events, as the audit consumer stores them from task-events."""
    rows = OutboxEvent.objects.filter(topic=TASK_EVENTS, key=str(task_id)).order_by("id")
    entries = []
    for offset, row in enumerate(rows):
        event = json.loads(row.payload)
        entries.append(AuditEntry.objects.create(
            event_id=event["event_id"], event_type=event["event_type"], task_id=event["data"]["task_id"],
            user_id=event["data"]["user_id"], title=event["data"]["title"],
            occurred_at=datetime.fromisoformat(event["timestamp"]), data=event["data"], metadata=event["metadata"],
            topic="task-events", partition=0, offset=offset,
        ))
    return entries


def text(response):
    return re.sub(r"\s+", " ", response.content.decode())


def test_the_list_shows_usernames_and_links_to_the_task_history_and_the_task(viewer, owner):
    task = task_create(user=owner, context=API, title="Water plants")
    [created] = audited(task.id)

    page = text(viewer.get(CHANGELIST))

    assert f'<a href="{CHANGELIST}?username=marguerite">marguerite</a>' in page
    assert f'href="{CHANGELIST}?task_id={task.id}"' in page
    assert f'href="{reverse("admin:tasks_task_change", args=[task.id])}">task</a>' in page
    assert f">{owner.pk}<" not in page
    history = text(viewer.get(CHANGELIST, {"task_id": str(task.id)}))
    assert "Water plants" in history and "1 audit entry" in history


def test_a_deleted_task_still_links_to_its_history_and_says_it_is_gone(viewer, owner):
    task = task_create(user=owner, context=API, title="Old chore")
    task_id = task.id
    task_delete(task=task, context=API)
    audited(task_id)

    page = text(viewer.get(CHANGELIST))
    assert f'?task_id={task_id}" title="every audited event of this task">{str(task_id)[:8]}…</a> (deleted)' in page
    assert reverse("admin:tasks_task_change", args=[task_id]) not in page


def test_the_user_filter_is_a_username_box_that_narrows_the_list(viewer, owner):
    other = User.objects.create_user("bertrand", password="pw-123456")
    task_create(user=owner, context=API, title="Hers")
    theirs = task_create(user=other, context=API, title="His")
    for task in OutboxEvent.objects.filter(topic=TASK_EVENTS).values_list("key", flat=True):
        audited(task)

    page = text(viewer.get(CHANGELIST, {"username": "Bertrand"}))
    assert "His" in page and "Hers" not in page
    assert 'name="username" value="Bertrand"' in page
    assert "<option" not in page.split("By user")[1].split("</details>")[0]  # a box, not a list of users
    assert str(theirs.id) in page


def test_times_are_on_the_viewers_clock_and_name_the_zone(viewer, owner):
    task = task_create(user=owner, context=API, title="Call the bank", due_date=datetime(2027, 5, 3, 1, tzinfo=UTC))
    [entry] = audited(task.id)
    entry.occurred_at = datetime(2027, 5, 2, 23, 30, tzinfo=UTC)
    entry.save()

    page = text(viewer.get(CHANGELIST))
    assert "2027-05-03 08:30:00 JST (Asia/Tokyo)" in page and "Times in Asia/Tokyo" in page
    detail = text(viewer.get(reverse("admin:audit_auditentry_change", args=[entry.pk])))
    assert "2027-05-03 08:30:00 JST (Asia/Tokyo)" in detail
    assert "2027-05-03 10:00:00 JST (Asia/Tokyo)" in detail  # the due date in the diff, 01:00Z


def test_each_change_shows_what_it_changed_against_the_previous_audited_version(viewer, owner):
    task = task_create(user=owner, context=API, title="Draft", priority=4, tags=["home"])
    task = task_update(task=task, context=API, title="Final report", priority=1)
    task = task_update(task=task, context=API, tags=["work", "q2"])
    task_complete(task=task, context=API)
    created, renamed, retagged, completed = audited(task.id)

    page = text(viewer.get(CHANGELIST, {"task_id": str(task.id)}))
    for changed in ("created", "title, priority", "tags", "completed"):
        assert f"<td class=\"field-changes\">{changed}</td>" in page

    detail = text(viewer.get(reverse("admin:audit_auditentry_change", args=[renamed.pk])))
    assert "Against version 1, the previous audited version of this task." in detail
    assert '<th scope="row">title</th><td><del>Draft</del></td><td><ins>Final report</ins></td>' in detail
    assert '<th scope="row">priority</th><td><del>4</del></td><td><ins>1</ins></td>' in detail
    assert '<th scope="row">description</th>' not in detail  # unchanged fields are left out
    detail = text(viewer.get(reverse("admin:audit_auditentry_change", args=[retagged.pk])))
    assert '<th scope="row">tags</th><td><del>home</del></td><td><ins>work, q2</ins></td>' in detail
    # An event that arrived out of order is still compared with the version before it.
    AuditEntry.objects.filter(pk=renamed.pk).update(occurred_at=completed.occurred_at + timedelta(hours=1))
    detail = text(viewer.get(reverse("admin:audit_auditentry_change", args=[retagged.pk])))
    assert "Against version 2" in detail


def test_the_task_history_shows_its_reminders_in_app_and_e_mail_delivery_states(viewer, owner):
    task = task_create(user=owner, context=API, title="Renew passport")
    [entry] = audited(task.id)
    delivered = Notification.objects.create(user=owner, reminder_id=uuid.uuid4(), task_id=task.id, title="Renew passport", body="b")
    failed = OutgoingEmail.objects.create(
        user=owner, notification=delivered, kind="reminder", to="m@example.org", subject="Reminder", body="b",
        status=OutgoingEmail.Status.FAILED, attempts=5, last_error="SMTPServerDisconnected: gone",
    )
    in_app_only = Notification.objects.create(
        user=owner, reminder_id=uuid.uuid4(), task_id=task.id, title="Renew passport", body="b", read=True,
        created_at=timezone.now(),
    )

    detail = text(viewer.get(reverse("admin:audit_auditentry_change", args=[entry.pk])))

    assert f'href="{reverse("admin:notifications_notification_change", args=[delivered.pk])}"' in detail
    assert f'href="{reverse("admin:notifications_notification_change", args=[in_app_only.pk])}"' in detail
    assert "<td>unread</td><td>failed</td>" in detail and "<td>read</td><td>none</td>" in detail
    assert f'href="{reverse("admin:notifications_outgoingemail_change", args=[failed.pk])}"' in detail
    assert "5 attempt(s), last error: SMTPServerDisconnected: gone" in detail
