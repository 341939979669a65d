"""Account settings and the admin's audit browsing, in real headless Chromium against the real
processes (the fixtures and helpers of test_web_browser.py)."""

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from audit.models import AuditEntry
from tasks.events import EventContext
from tasks.models import Task, User
from tasks.services import task_create, task_update
from testing.waits import wait_for
from tests.tasks.web.test_web_browser import (  # noqa: F401 (fixtures)
    PASSWORD,
    browser,
    in_thread,
    shoot,
    signed_in_page,
    system,
    task_item,
)

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="browser-settings")


def test_changing_the_zone_on_the_settings_page_shows_the_same_instants_on_the_new_clock(system, browser):
    owner = in_thread(User.objects.create_user, "ada", email="ada@example.org", password=PASSWORD, timezone="Europe/Paris")
    # 08:30Z on 7 January 2030: 09:30 in Paris, 03:30 in New York.
    in_thread(task_create, user=owner, context=API, title="Call the notary", due_date=datetime(2030, 1, 7, 8, 30, tzinfo=UTC))
    page = signed_in_page(browser, system, "ada")
    expect(task_item(page, "Call the notary")).to_contain_text("9:30")

    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Time zone")).to_be_visible()
    shoot(page, "settings-desktop")
    page.get_by_role("combobox", name="Time zone").select_option("America/New_York")
    page.get_by_role("button", name="Save time zone").click()
    expect(page.get_by_role("status")).to_contain_text("Time zone saved")
    page.get_by_role("link", name="Tasks").click()

    notary = task_item(page, "Call the notary")
    expect(notary).to_contain_text("Jan 7, 2030")
    expect(notary).to_contain_text("3:30")
    task = in_thread(Task.objects.get, title="Call the notary")
    assert task.due_date == datetime(2030, 1, 7, 8, 30, tzinfo=UTC)  # the instant never moved

    phone = signed_in_page(browser, system, "ada", viewport={"width": 390, "height": 844})
    phone.goto(f"{system}/settings/")
    expect(phone.get_by_role("combobox", name="Time zone")).to_have_value("America/New_York")
    save = phone.get_by_role("button", name="Save time zone")
    assert save.bounding_box()["height"] >= 44 and save.bounding_box()["width"] > 300
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    shoot(phone, "settings-phone")


def test_an_admin_opens_a_tasks_history_and_sees_what_a_change_changed(system, browser):
    in_thread(User.objects.create_superuser, "root", "root@example.org", PASSWORD, timezone="Europe/Paris")
    owner = in_thread(User.objects.create_user, "marguerite", password=PASSWORD)
    task = in_thread(task_create, user=owner, context=API, title="Draft budget", priority=4)
    in_thread(task_update, task=task, context=API, title="Budget 2030", priority=1)
    # Written by the audit consumer from task-events.
    assert wait_for(lambda: in_thread(AuditEntry.objects.filter(task_id=task.id).count) == 2, timeout=60)

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{system}/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Audit entries").click()
    expect(page.get_by_text("Times in Europe/Paris")).to_be_visible()
    page.get_by_role("link", name=f"{str(task.id)[:8]}…").first.click()  # the task's history
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("marguerite")
    expect(rows.first).to_contain_text("title, priority")
    rows.first.locator("th a").click()  # the newest entry: the update

    diff = page.locator("table.audit-diff")
    expect(diff).to_contain_text("Draft budget")
    expect(diff).to_contain_text("Budget 2030")
    expect(diff.locator("tr", has_text="priority")).to_contain_text("4")
    expect(page.get_by_text("Against version 1")).to_be_visible()
    shoot(page, "admin-audit-diff")
