"""Retention of the web app's tables: the sync log keeps SYNC_LOG_RETENTION_DAYS, a cursor from
before its purge answers 410 Gone, and expired sessions are cleared, all in bounded batches."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from events import retention
from tasks import sync
from tasks.models import SyncLogPurge, TaskChange, User
from tasks.tasks import clear_expired_sessions, purge_old_sync_changes
from testing.db import rows_deleted_per_statement

pytestmark = pytest.mark.django_db


def create(client, title):
    response = client.post("/api/tasks/", {"title": title}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def sync_since(client, since):
    return client.get("/api/sync/", {"since": since})


def cursor_now(client):
    body = client.get("/api/sync/").json()
    while body["has_more"]:
        body = sync_since(client, body["cursor"]).json()
    return body["cursor"]


def age_changes(username, days):
    """Make every sync-log change of ``username`` ``days`` old."""
    return TaskChange.objects.filter(user__username=username).update(created_at=timezone.now() - timedelta(days=days))


def test_the_purge_deletes_only_changes_older_than_the_retention(alice, bob):
    create(alice, "Old")
    age_changes("alice", 15)
    create(bob, "Younger than 14 days")
    age_changes("bob", 13)

    assert purge_old_sync_changes() == 1
    assert list(TaskChange.objects.values_list("user__username", flat=True)) == ["bob"]


def test_a_fresh_cursor_still_gets_200_after_a_purge_of_other_users_old_changes(alice, bob):
    create(bob, "Bob's old task")
    age_changes("bob", 15)
    create(alice, "Alice's task")
    cursor = cursor_now(alice)

    assert sync.purge_sync_log() == 1
    create(alice, "After the purge")
    response = sync_since(alice, cursor)

    assert response.status_code == 200, response.json()
    assert [c["data"]["task"]["title"] for c in response.json()["changes"]] == ["After the purge"]


def test_a_cursor_older_than_the_purged_changes_gets_410_and_a_cursor_to_continue_from(alice):
    stale = cursor_now(alice)
    create(alice, "Purged")
    age_changes("alice", 15)
    sync.purge_sync_log()
    create(alice, "Kept")

    response = sync_since(alice, stale)

    assert response.status_code == 410
    body = response.json()
    assert "reload" in body["detail"]
    # After reloading its list, the client continues from the given cursor: only what came since.
    create(alice, "After the reload")
    again = sync_since(alice, body["cursor"])
    assert again.status_code == 200
    assert [c["data"]["task"]["title"] for c in again.json()["changes"]] == ["After the reload"]


def test_the_cursor_at_the_watermark_is_complete_and_the_one_just_below_is_stale(alice):
    create(alice, "One")
    create(alice, "Two")
    age_changes("alice", 15)
    purged = max(TaskChange.objects.values_list("id", flat=True))
    sync.purge_sync_log()
    watermark = SyncLogPurge.objects.get().purged_through

    assert watermark == purged
    assert sync_since(alice, watermark).status_code == 200
    assert sync_since(alice, watermark - 1).status_code == 410


def test_a_user_whose_changes_were_all_purged_gets_a_starting_cursor_that_is_not_stale(alice, bob):
    create(alice, "Long ago")
    age_changes("alice", 15)
    create(bob, "Bob's, later")
    age_changes("bob", 15)
    sync.purge_sync_log()

    starting = sync.latest_cursor(User.objects.get(username="alice"))

    assert int(starting) == SyncLogPurge.objects.get().purged_through
    assert sync_since(alice, starting).json() == {"changes": [], "cursor": starting, "has_more": False}


def test_the_sync_log_is_purged_in_bounded_batches_each_raising_the_watermark(alice, monkeypatch):
    for n in range(5):
        create(alice, f"Old {n}")
    age_changes("alice", 15)
    ids = sorted(TaskChange.objects.values_list("id", flat=True))
    monkeypatch.setattr(retention, "PURGE_BATCH_SIZE", 2)

    with rows_deleted_per_statement() as deleted:
        assert sync.purge_sync_log() == 5

    assert deleted == [2, 2, 1]
    assert SyncLogPurge.objects.get().purged_through == ids[-1]
    assert not TaskChange.objects.exists()


def test_expired_sessions_are_cleared_and_live_ones_kept():
    now = timezone.now()
    Session.objects.create(session_key="expired", session_data="", expire_date=now - timedelta(seconds=1))
    Session.objects.create(session_key="live", session_data="", expire_date=now + timedelta(days=1))

    assert clear_expired_sessions() == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]


def test_the_sync_log_session_and_token_purges_are_on_the_beat_schedule():
    scheduled = set(PeriodicTask.objects.filter(enabled=True).values_list("task", flat=True))
    assert {"tasks.purge_sync_log", "tasks.clear_expired_sessions", "tasks.purge_expired_tokens"} <= scheduled
