import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tasks.accounts.tokens import issue
from tasks.models import User


@pytest.fixture
def make_entry():
    """Store an audit entry as the audit handler would."""
    base = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def make(user_id, *, task_id=None, event_type="task.created", title="Buy milk", minutes=0):
        task_id = str(task_id or uuid.uuid4())
        data = {"task_id": task_id, "title": title, "user_id": str(user_id), "version": 1}
        return AuditEntry.objects.create(
            event_id=uuid.uuid4(),
            event_type=event_type,
            task_id=task_id,
            user_id=str(user_id),
            title=title,
            occurred_at=base + timedelta(minutes=minutes),
            data=data,
            metadata={"source": "todo-api", "correlation_id": "c-1"},
            topic="task-events",
            partition=0,
            offset=minutes,
        )

    return make


@pytest.fixture
def user(db):
    return User.objects.create_user(username="alice", password="a-long-password")


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue(user)}")
    return client
