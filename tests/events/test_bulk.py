"""Many rows in one statement: bulk_insert (model instances) and insert_rows (plain rows)."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from events.bulk import insert_rows
from events.models import ProcessedEvent

pytestmark = pytest.mark.django_db


def entry_row(**columns):
    return {
        "event_id": str(uuid.uuid4()), "event_type": "task.updated", "task_id": uuid.uuid4(), "user_id": "7",
        "title": "Water the plants", "occurred_at": datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
        "recorded_at": datetime(2026, 12, 1, 8, 31, tzinfo=UTC), "data": {"tags": ["home"], "version": 2},
        "metadata": {"source": "todo-api"}, "topic": "task-events", "partition": 3, "offset": 41, **columns,
    }


def test_plain_rows_are_stored_in_one_statement_in_their_columns_types():
    rows = [entry_row(offset=offset) for offset in range(3)]
    with CaptureQueriesContext(connection) as queries:
        insert_rows(AuditEntry, rows)
    assert len(queries.captured_queries) == 1
    stored = {str(entry.event_id): entry for entry in AuditEntry.objects.all()}
    for row in rows:
        entry = stored[row["event_id"]]
        assert entry.task_id == row["task_id"] and entry.occurred_at == row["occurred_at"]
        assert entry.recorded_at == row["recorded_at"] and entry.offset == row["offset"]
        assert entry.data == row["data"] and entry.metadata == row["metadata"]


def test_rows_that_conflict_are_left_out_when_conflicts_are_ignored_and_an_error_otherwise():
    first = entry_row()
    insert_rows(AuditEntry, [first])
    insert_rows(AuditEntry, [entry_row(event_id=first["event_id"], title="again"), entry_row()], ignore_conflicts=True)
    assert AuditEntry.objects.count() == 2 and AuditEntry.objects.get(event_id=first["event_id"]).title == first["title"]
    with pytest.raises(IntegrityError):
        insert_rows(AuditEntry, [first])


def test_a_row_without_a_column_is_refused_before_anything_is_sent():
    # jsonb_to_recordset would read a missing key as NULL: a default (auto_now_add) silently lost.
    row = entry_row()
    del row["recorded_at"]
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(ValueError, match="recorded_at"):
            insert_rows(AuditEntry, [row])
        with pytest.raises(ValueError, match="processed_at"):
            insert_rows(ProcessedEvent, [{"consumer_group": "g", "event_id": str(uuid.uuid4())}])
    assert queries.captured_queries == []
