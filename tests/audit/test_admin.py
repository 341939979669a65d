"""The Django admin browses the audit trail read-only."""

import pytest
from django.urls import reverse

from tasks.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    admin_user = User.objects.create_superuser(username="root", password="a-long-password", email="root@example.com")
    client.force_login(admin_user)
    return client


def test_the_list_renders_with_filters_for_event_type_user_and_date(staff, make_entry):
    make_entry("7", title="Water plants", event_type="task.completed")
    response = staff.get(reverse("admin:audit_auditentry_changelist"))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Water plants" in content
    assert "By event type" in content and "By user" in content and "By occurred at" in content
    filtered = staff.get(reverse("admin:audit_auditentry_changelist"), {"event_type": "task.created"})
    assert filtered.status_code == 200 and "Water plants" not in filtered.content.decode()


def test_search_finds_entries_by_task_id_and_by_title(staff, make_entry):
    plants = make_entry("7", title="Water plants")
    make_entry("7", title="Call mum")
    url = reverse("admin:audit_auditentry_changelist")

    by_title = staff.get(url, {"q": "plants"}).content.decode()
    by_task = staff.get(url, {"q": str(plants.task_id)}).content.decode()

    assert "Water plants" in by_title and "Call mum" not in by_title
    assert "Water plants" in by_task and "Call mum" not in by_task


def test_the_detail_page_shows_the_event_json_pretty_printed_and_cannot_be_saved(staff, make_entry):
    entry = make_entry("7", title="Water plants")
    response = staff.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert '<pre class="audit-json">{\n  &quot;task_id&quot;' in content
    assert f"&quot;task_id&quot;: &quot;{entry.task_id}&quot;" in content
    assert 'name="_save"' not in content and "deletelink" not in content


def test_the_admin_offers_no_add_change_or_delete(staff, make_entry):
    entry = make_entry("7")
    changelist = staff.get(reverse("admin:audit_auditentry_changelist")).content.decode()
    assert reverse("admin:audit_auditentry_add") not in changelist
    assert 'name="action"' not in changelist  # no bulk "delete selected"
    assert staff.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert staff.post(reverse("admin:audit_auditentry_change", args=[entry.pk]), {"title": "changed"}).status_code == 403
    assert staff.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.title == "Buy milk"
