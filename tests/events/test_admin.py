"""The outbox in the Django admin: read-only, parked rows first, filtered by state, parked rows retried."""

import uuid

import pytest

from events.models import OutboxEvent
from testing.outbox import outbox_rows

pytestmark = pytest.mark.django_db


def park(row, reason="MSG_SIZE_TOO_LARGE: too large"):
    OutboxEvent.objects.filter(pk=row.pk).update(parked_at=row.created_at, park_reason=reason)


CHANGELIST = "/admin/events/outboxevent/"


def listed_ids(page):
    return [int(value) for value in page.context["cl"].result_list.values_list("id", flat=True)]


def test_the_outbox_changelist_lists_parked_rows_first_and_filters_by_state(admin_client):
    task = str(uuid.uuid4())
    first, parked, held, other = outbox_rows(
        (str(uuid.uuid4()), ""), (task, ""), (task, "later"), (str(uuid.uuid4()), "")
    )
    park(parked)

    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    assert listed_ids(page)[0] == parked.pk
    assert listed_ids(admin_client.get(CHANGELIST, {"state": "parked"})) == [parked.pk]
    assert listed_ids(admin_client.get(CHANGELIST, {"state": "held"})) == [held.pk]
    assert sorted(listed_ids(admin_client.get(CHANGELIST, {"state": "pending"}))) == [first.pk, other.pk]


def test_an_outbox_row_cannot_be_added_edited_or_deleted_in_the_admin(admin_client):
    [row] = outbox_rows((str(uuid.uuid4()), ""))
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}{row.pk}/change/", {"payload": "{}"}).status_code == 403
    assert admin_client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OutboxEvent.objects.get(pk=row.pk).payload == row.payload
    page = admin_client.get(f"{CHANGELIST}{row.pk}/change/")
    assert page.status_code == 200 and row.key in page.content.decode()


def test_the_retry_action_unparks_only_the_selected_parked_rows(admin_client):
    retried, left, pending = outbox_rows((str(uuid.uuid4()), ""), (str(uuid.uuid4()), ""), (str(uuid.uuid4()), ""))
    park(retried)
    park(left)
    response = admin_client.post(
        CHANGELIST, {"action": "retry_selected", "_selected_action": [retried.pk, pending.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "1 parked row(s) retried" in response.content.decode()
    assert OutboxEvent.objects.get(pk=retried.pk).parked_at is None
    assert OutboxEvent.objects.get(pk=left.pk).parked_at is not None
