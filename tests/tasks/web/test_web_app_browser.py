"""Issue 13 in real headless Chromium against the real processes: no lost edits, views, undo, a
page that does not go stale, the phone layout and accessibility (axe-core in the same browser).

The processes, the browser and the sign-in are those of test_web_browser.py. Screenshots of
desktop and phone, light and dark, go to test-artifacts/.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from events.models import OutboxEvent
from tasks import services
from tasks.events import EventContext
from tasks.models import Task, User
from testing.waits import wait_for
from tests.tasks.web.test_web_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, LIVE_TIMEOUT_MS, PASSWORD, WARM_UP_TIMEOUT_MS, browser, in_thread, shoot, signed_in_page, system,
    task_item,
)

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[3] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
CONTEXT = EventContext("test", "browser-test")


def user(name="ada", zone="Europe/Paris"):
    return in_thread(User.objects.create_user, name, password=PASSWORD, timezone=zone)


def add(owner, title, **fields):
    return in_thread(services.task_create, user=owner, context=CONTEXT, title=title, **fields)


def stored(task_id):
    return in_thread(lambda: Task.objects.filter(pk=task_id).first())


def page_for(browser, base_url, name="ada", viewport=None, scheme="light"):
    """signed_in_page with a colour scheme: a context of its own, as two tabs of one user are."""
    original = browser.new_context

    def new_context(**kwargs):
        return original(color_scheme=scheme, **kwargs)

    browser.new_context = new_context
    try:
        return signed_in_page(browser, base_url, name, viewport=viewport)
    finally:
        browser.new_context = original


# ---------------------------------------------------------------------------- 1. no lost edits


def test_a_save_from_a_stale_dialog_shows_the_newer_version_and_keeping_mine_loses_nothing(system, browser):
    ada = user()
    report = add(ada, "Draft the report")
    tab_a = page_for(browser, system)
    tab_b = page_for(browser, system)

    tab_b.get_by_role("button", name="Edit “Draft the report”").click()  # B's dialog: version 1
    tab_a.get_by_role("button", name="Edit “Draft the report”").click()
    tab_a.locator("#task-dialog").get_by_label("Title").fill("Draft the final report")
    tab_a.locator("#task-dialog").get_by_role("button", name="Save").click()
    expect(task_item(tab_b, "Draft the final report")).to_be_visible(timeout=WARM_UP_TIMEOUT_MS)

    dialog_b = tab_b.locator("#task-dialog")
    expect(dialog_b.get_by_label("Title")).to_have_value("Draft the report")  # stale, as the issue says
    dialog_b.get_by_label("Description").fill("Add the Q3 numbers")
    dialog_b.get_by_role("button", name="Save").click()

    conflict = dialog_b.locator("#conflict")
    expect(conflict).to_be_visible()
    expect(conflict.locator("tr", has_text="Title")).to_contain_text("Draft the final report")
    expect(conflict.locator("tr", has_text="Description")).to_contain_text("Add the Q3 numbers")
    shoot(tab_b, "web13-conflict-desktop-light")
    assert stored(report.id).description == ""  # nothing applied behind the user's back

    dialog_b.get_by_role("button", name="Keep my change").click()
    expect(tab_b.locator("#task-dialog")).to_be_hidden()
    expect(task_item(tab_a, "Draft the final report")).to_contain_text("Add the Q3 numbers", timeout=LIVE_TIMEOUT_MS)
    saved = stored(report.id)
    assert (saved.title, saved.description, saved.version) == ("Draft the final report", "Add the Q3 numbers", 3)


def test_taking_the_newer_version_drops_the_unsaved_change(system, browser):
    ada = user()
    task = add(ada, "Call the bank")
    page = page_for(browser, system)
    page.get_by_role("button", name="Edit “Call the bank”").click()
    in_thread(services.task_update, task=task, context=CONTEXT, title="Call the bank at 9")
    page.locator("#task-dialog").get_by_label("Title").fill("Call the insurer")
    page.locator("#task-dialog").get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Use the newer version").click()
    expect(page.locator("#task-dialog")).to_be_hidden()
    expect(task_item(page, "Call the bank at 9")).to_be_visible()
    assert stored(task.id).title == "Call the bank at 9"


# ------------------------------------------------------------------------------------- 4. views


def test_views_today_upcoming_all_open_and_completed_with_filters_and_a_dense_list(system, browser):
    ada = user()
    now = timezone.now()
    add(ada, "Overdue bill", due_date=now - timedelta(days=1, hours=1))
    add(ada, "Later today", due_date=now + timedelta(minutes=2))
    add(ada, "Tomorrow's dentist", due_date=now + timedelta(days=1), priority=1)
    add(ada, "Trip in three days", due_date=now + timedelta(days=3))
    in_thread(services.task_complete, task=add(ada, "Finished copy", due_date=now - timedelta(hours=3)), context=CONTEXT)
    for number in range(16):
        add(ada, f"Someday {number:02}")
    page = page_for(browser, system)

    open_titles = page.locator(".task .task-title")
    expect(open_titles).to_have_count(20)  # All open is the default: the completed copy is hidden
    expect(task_item(page, "Finished copy")).to_have_count(0)
    rows = page.locator(".task")
    first, last = rows.first.bounding_box(), rows.nth(15).bounding_box()
    per_task = (last["y"] + last["height"] - first["y"]) / 16
    assert per_task <= 800 / 14, f"a task takes {per_task:.0f} px"
    shoot(page, "web13-views-all-open-desktop-light")

    page.get_by_role("button", name="Today", exact=True).click()
    expect(page.locator(".task .task-title")).to_have_text(["Open: Overdue bill", "Open: Later today"])

    page.get_by_role("button", name="Upcoming").click()
    headings = page.locator(".day-heading")
    expect(headings).to_have_count(3)
    expect(headings.first).to_contain_text("Today")
    expect(headings.nth(1)).to_contain_text("Tomorrow")
    expect(page.locator(".day-group").nth(1)).to_contain_text("Tomorrow's dentist")
    expect(page.locator(".day-group").nth(2)).to_contain_text("Trip in three days")
    shoot(page, "web13-views-upcoming-desktop-light")

    page.get_by_role("button", name="Completed", exact=True).click()
    expect(page.locator(".task .task-title")).to_have_text(["Done: Finished copy"])

    page.get_by_role("button", name="All open", exact=True).click()
    page.get_by_role("button", name="Filters").click()
    page.locator("#filters").get_by_label("Priority").select_option("1")
    expect(page.locator(".task .task-title")).to_have_text(["Open: Tomorrow's dentist"])
    expect(page.get_by_role("button", name="Filters · 1")).to_be_visible()
    page.locator("#filters").get_by_label("Priority").select_option("")
    page.get_by_label("Search").fill("someday 1")
    expect(page.locator(".task")).to_have_count(6)


# -------------------------------------------------------------------------------------- 5. undo


def test_complete_and_delete_offer_undo_through_the_normal_service_calls(system, browser):
    ada = user()
    plants = add(ada, "Water the plants")
    add(ada, "Feed the cat")
    page = page_for(browser, system)

    page.get_by_label("Open: Water the plants").check()
    toast = page.locator(".toast", has_text="Completed")
    expect(toast).to_be_visible()
    expect(task_item(page, "Water the plants")).to_have_count(0)  # gone from All open
    toast.get_by_role("button", name="Undo completing “Water the plants”").click()
    expect(page.get_by_label("Open: Water the plants")).to_be_focused()
    back = stored(plants.id)
    assert (back.completed, back.version) == (False, 3)  # completed, then reopened: two real changes

    page.get_by_role("button", name="Delete “Water the plants”").click()
    confirm = page.get_by_role("alertdialog", name="Delete “Water the plants”?")
    expect(confirm).to_be_visible()
    shoot(page, "web13-confirm-delete-desktop-light")
    confirm.get_by_role("button", name="Delete").click()
    expect(task_item(page, "Water the plants")).to_have_count(0)
    expect(page.get_by_label("Open: Feed the cat")).to_be_focused()  # not <body>
    shoot(page, "web13-undo-toast-desktop-light")
    assert stored(plants.id) is not None  # deferred while Undo is offered
    page.get_by_role("button", name="Undo deleting “Water the plants”").click()
    expect(task_item(page, "Water the plants")).to_be_visible()

    page.get_by_role("button", name="Delete “Water the plants”").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Delete “Water the plants”")).to_be_focused()

    page.get_by_role("button", name="Delete “Water the plants”").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    assert wait_for(lambda: stored(plants.id) is None, timeout=15)
    expect(page.locator(".toast", has_text="Deleted")).to_have_count(0)
    types = in_thread(lambda: list(OutboxEvent.objects.filter(key=str(plants.id), topic="task-events")
                                   .order_by("id").values_list("event_type", flat=True)))
    assert types == ["task.created", "task.completed", "task.updated", "task.deleted"]  # never a re-creation


def test_a_delete_deferred_by_undo_is_not_applied_to_a_task_changed_meanwhile(system, browser):
    ada = user()
    task = add(ada, "Renew the passport")
    page = page_for(browser, system)
    page.get_by_role("button", name="Delete “Renew the passport”").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    in_thread(services.task_update, task=task, context=CONTEXT, description="appointment on Monday")
    expect(page.locator(".toast", has_text="Changed elsewhere")).to_be_visible(timeout=15_000)
    expect(task_item(page, "Renew the passport")).to_contain_text("appointment on Monday")
    assert stored(task.id) is not None


# ------------------------------------------------------------------------------- 6. stale page


def test_a_due_time_passing_turns_the_task_overdue_without_reload_and_a_past_reminder_is_flagged(system, browser):
    ada = user()
    add(ada, "Leave for the train", due_date=timezone.now() + timedelta(seconds=4))
    page = page_for(browser, system)
    item = task_item(page, "Leave for the train")
    expect(item.locator(".chip.due")).not_to_have_class("chip due overdue")
    expect(item.locator(".chip.overdue")).to_contain_text("Overdue", timeout=15_000)
    assert page.evaluate("window.__loadedOnce") is True

    page.get_by_role("button", name="Edit “Leave for the train”").click()
    dialog = page.locator("#task-dialog")
    warning = dialog.locator("#task-remind-warning")
    expect(warning).to_be_hidden()
    dialog.get_by_label("Reminder").select_option("0")  # at the due time: already past
    expect(warning).to_contain_text("already past")
    dialog.get_by_label("Reminder").select_option("custom")
    dialog.get_by_label("Remind at").fill("2099-01-01T09:00")
    expect(warning).to_be_hidden()


# ------------------------------------------------------------------------------------- 7. phone


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_on_a_phone_the_tasks_come_first_with_touch_sized_targets(system, browser, scheme):
    ada = user("adalovelace")
    for number in range(8):
        add(ada, f"Errand {number}", due_date=timezone.now() + timedelta(days=number), tags=["home"], priority=1 + number % 4)
    page = page_for(browser, system, "adalovelace", viewport=PHONE, scheme=scheme)

    topbar = page.locator(".topbar").bounding_box()
    assert topbar["height"] <= 60, topbar
    expect(page.locator(".user-name")).to_be_visible()
    expect(page.locator(".user-name")).to_have_text("adalovelace")
    assert page.get_by_role("button", name="Sign out").bounding_box()["height"] <= 48  # one line
    expect(page.locator("#filters")).to_be_hidden()
    visible_tasks = page.evaluate("[...document.querySelectorAll('.task')].filter(t => t.getBoundingClientRect().bottom <= innerHeight).length")
    assert visible_tasks >= 6, visible_tasks
    for control in [page.locator(".done-toggle").first, *page.locator(".task").first.locator(".task-actions button").all(),
                    page.get_by_role("button", name="Filters"), page.locator("#fab-add")]:
        box = control.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44, (control, box)
    shoot(page, f"web13-phone-{scheme}")

    page.get_by_role("button", name="Add a task").click()
    save = page.locator("#task-save")
    expect(save).to_be_in_viewport()
    page.locator("#task-dialog").get_by_label("Repeat").select_option("weekly")  # the longest form
    expect(save).to_be_in_viewport()
    page.screenshot(path=str(ARTIFACTS / f"web13-phone-dialog-{scheme}.png"))


# ----------------------------------------------------------------------------- 9. accessibility


def axe_violations(page):
    """Serious and critical axe-core violations of the page as it is (WCAG 2 A/AA rules)."""
    assert AXE.exists(), "axe-core is missing: make js-tools (make test runs it)"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}})"
    )
    return [
        f"{violation['id']} ({violation['impact']}): {[node['target'] for node in violation['nodes']][:5]} "
        f"{violation['nodes'][0].get('failureSummary', '')}"
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_main_pages_have_no_serious_accessibility_violations(system, browser, scheme):
    ada = user()
    now = timezone.now()
    add(ada, "Overdue bill", due_date=now - timedelta(hours=2), priority=1, tags=["money"])
    add(ada, "Plan the week", due_date=now + timedelta(days=1), priority=2, remind_at=now + timedelta(hours=20),
        recurrence_rule="FREQ=WEEKLY;BYDAY=MO")
    add(ada, "Read a book", priority=3, description="Chapter 4")
    in_thread(services.task_complete, task=add(ada, "Done already"), context=CONTEXT)
    add(ada, "Someday", priority=4)

    anonymous = browser.new_context(color_scheme=scheme).new_page()
    found = {}
    for path in ("/login/", "/signup/"):
        anonymous.goto(f"{system}{path}")
        found[path] = axe_violations(anonymous)
    hint = anonymous.locator("#id_email").get_attribute("aria-describedby")
    expect(anonymous.locator(f"#{hint}")).to_have_text("Optional: reminders are e-mailed here too.")

    page = page_for(browser, system, viewport={"width": 1100, "height": 800}, scheme=scheme)
    found["app"] = axe_violations(page)
    shoot(page, f"web13-app-desktop-{scheme}")
    page.get_by_role("button", name="Completed", exact=True).click()
    found["app, completed"] = axe_violations(page)
    page.get_by_role("button", name="All open", exact=True).click()
    page.get_by_role("button", name="Edit “Plan the week”").click()
    found["app with the task dialog"] = axe_violations(page)
    shoot(page, f"web13-dialog-desktop-{scheme}")
    assert found == {name: [] for name in found}


def test_the_task_list_is_one_tab_stop_with_arrow_keys_and_the_assistant_closes_on_escape(system, browser):
    ada = user()
    for title in ("First", "Second", "Third"):
        add(ada, title)
    page = page_for(browser, system)
    stops = page.evaluate("""() => [...document.querySelectorAll('#task-list button, #task-list input')]
        .filter((node) => node.tabIndex >= 0).length""")
    assert stops == 1

    page.get_by_label("Search").focus()
    page.keyboard.press("Tab")  # Filters
    page.keyboard.press("Tab")  # into the list: the first task's checkbox
    expect(page.locator(".done-toggle").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator(".done-toggle").nth(1)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator(".task").nth(1).locator("[data-action=edit]")).to_be_focused()
    page.keyboard.press("Tab")  # out of the list in one step
    assert page.evaluate("document.activeElement.closest('#task-list') === null")

    page.get_by_role("button", name="Assistant").click()
    expect(page.locator("#chat-panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#chat-panel")).to_be_hidden()
    expect(page.get_by_role("button", name="Assistant")).to_be_focused()
