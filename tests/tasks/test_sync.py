"""The sync log's ids are its cursors (GET /api/sync/): one user's changes must get ids in the
order they commit, so that a client that has read up to an id never misses a later-committing
change with a smaller one. ``record_changes`` takes the user's lock before it draws the ids."""

import threading
import uuid

import pytest
from django.db import connection, connections, transaction

from tasks.sync import record_changes
from testing.factories import UserFactory
from testing.waits import wait_until


def change_of(user):
    return {"data": {"user_id": user.id, "task_id": str(uuid.uuid4())}}


def in_thread(work):
    """Run ``work`` in a thread of its own (its own database connection); return (thread, result)."""
    result = {}

    def run():
        try:
            result["value"] = work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def waiting_on_advisory_lock():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_users_second_writer_waits_for_the_first_and_draws_its_id_after_the_wait():
    ada, grace = UserFactory(), UserFactory()
    held, release = threading.Event(), threading.Event()

    def first_writer():
        with transaction.atomic():
            row = record_changes([change_of(ada)])[0]
            held.set()
            release.wait(30)
        return row.id

    def second_writer():
        with transaction.atomic():
            return record_changes([change_of(ada)])[0].id

    first, first_id = in_thread(first_writer)
    try:
        assert held.wait(30)
        second, second_id = in_thread(second_writer)
        wait_until(waiting_on_advisory_lock, 30, "ada's second writer waiting for her sync-log lock")
        with transaction.atomic():  # another user's change is not held up, and commits meanwhile
            other_id = record_changes([change_of(grace)])[0].id
    finally:
        release.set()
    first.join(30)
    second.join(30)
    assert first_id["value"] < other_id < second_id["value"]
