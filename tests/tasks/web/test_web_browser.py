"""The web app end to end, in real headless Chromium against the real processes.

The processes of `make run` that carry events (the web server, the outbox relay and every
registered consumer's: testing.system) run as subprocesses on this test's database, topics and
channel-layer namespace, exactly as `make run` starts them. Screenshots
go to test-artifacts/ (git-ignored).
"""

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from notifications.services import deliver_reminder
from tasks.models import Task, User
from testing.processes import serves, worker_environment
from testing.system import event_processes
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "a-long-passphrase"
# The promise: a change shows in the user's other open clients within a second.
LIVE_TIMEOUT_MS = 1000
# The first change of a run also waits for the bridge to join its consumer group.
WARM_UP_TIMEOUT_MS = 60_000

DONE = re.compile(r"\bdone\b")


def in_thread(function, *args, **kwargs):
    """Run ORM code beside Playwright's sync API (whose event loop makes Django refuse it here)."""
    def call():
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()  # the thread's own connection, or the test database cannot be dropped

    with ThreadPoolExecutor(1) as executor:
        return executor.submit(call).result()


@pytest.fixture
def system(transactional_db, free_port, tmp_path, kafka_namespace):
    """The processes of `make run` that carry events (testing.system: web, relay, every registered
    consumer's) on this test's database, topics and channel-layer namespace; yields the web app's URL."""
    processes = event_processes(tmp_path, worker_environment(), free_port)
    url = f"http://127.0.0.1:{free_port}"
    logs = lambda: "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))  # noqa: E731
    try:
        for process in processes.values():
            process.start()
        assert wait_for(lambda: serves(url) or not all(p.alive() for p in processes.values()), timeout=60)
        assert serves(url), logs()
        yield url
        exited = {name: p.process.returncode for name, p in processes.items() if not p.alive()}
        assert not exited, f"processes exited during the test: {exited}\n{logs()}"
    finally:
        for process in processes.values():
            process.stop(30)


@pytest.fixture
def browser():
    assert shutil.which("chromium") or os.path.exists(CHROMIUM), "Debian's chromium is missing: make browser (as root)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def signed_in_page(browser, base_url, username, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1100, "height": 760})
    page = context.new_page()
    page.goto(f"{base_url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=20_000)
    # Marks this document: had the page reloaded, the mark would be gone.
    page.evaluate("window.__loadedOnce = true")
    return page


def task_item(page, title):
    return page.locator(".task", has=page.locator(".task-title", has_text=title))


def shoot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_task_created_in_one_tab_shows_live_in_the_users_other_tab_and_never_in_another_users(system, browser):
    in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    in_thread(User.objects.create_user, "bob", password=PASSWORD)
    laptop = signed_in_page(browser, system, "ada")
    phone = signed_in_page(browser, system, "ada", viewport={"width": 390, "height": 844})
    bobs = signed_in_page(browser, system, "bob")

    # Warm-up: the bridge joins its consumer group with the first change of the run.
    laptop.get_by_label("New task title").fill("Warm up")
    laptop.get_by_label("New task title").press("Enter")
    expect(task_item(phone, "Warm up")).to_be_visible(timeout=WARM_UP_TIMEOUT_MS)

    laptop.get_by_label("New task title").fill("Pay the rent")
    laptop.get_by_label("New task title").press("Enter")
    expect(task_item(laptop, "Pay the rent")).to_be_visible()
    expect(task_item(phone, "Pay the rent")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    # A completed task leaves the default view (All open) in every tab, and shows in Completed.
    phone.get_by_label("Open: Pay the rent").check()
    expect(task_item(phone, "Pay the rent")).to_have_count(0)
    expect(task_item(laptop, "Pay the rent")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    phone.get_by_role("button", name="Completed", exact=True).click()
    expect(task_item(phone, "Pay the rent")).to_have_class(DONE)
    phone.get_by_role("button", name="All open", exact=True).click()

    # Details through the dialog: due date in ada's zone, tags, weekly recurrence, priority.
    laptop.get_by_role("button", name="Details…").click()
    dialog = laptop.locator("#task-dialog")
    dialog.get_by_label("Title").fill("Team meeting")
    dialog.get_by_label("Due").fill("2030-01-07T09:30")
    dialog.get_by_label("Priority").select_option("2")
    dialog.get_by_label("Tags").fill("work, weekly")
    dialog.get_by_label("Repeat").select_option("weekly")
    shoot(laptop, "web-task-dialog")
    dialog.get_by_role("button", name="Save").click()
    expect(task_item(laptop, "Team meeting")).to_be_visible()  # saved: the API answered
    meeting = task_item(phone, "Team meeting")
    expect(meeting).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(meeting).to_contain_text("Jan 7, 2030")
    expect(meeting).to_contain_text("9:30")
    expect(meeting).to_contain_text("Weekly on Mon")
    expect(meeting).to_contain_text("#work")
    task = in_thread(Task.objects.get, title="Team meeting")
    assert (task.due_date.isoformat(), task.recurrence_rule, task.priority) == (
        "2030-01-07T08:30:00+00:00", "FREQ=WEEKLY;BYDAY=MO", 2,
    )

    # The activity view reads the audit trail (written by the audit consumer).
    laptop.get_by_role("button", name="Completed", exact=True).click()
    laptop.get_by_role("button", name="Activity of “Pay the rent”").click()
    activity = laptop.locator("#activity-list")
    expect(activity).to_contain_text("Completed", timeout=30_000)
    expect(activity).to_contain_text("Created")
    shoot(laptop, "web-activity")
    laptop.get_by_role("button", name="Close").last.click()

    assert phone.evaluate("window.__loadedOnce") is True and laptop.evaluate("window.__loadedOnce") is True
    expect(bobs.locator(".task")).to_have_count(0)
    assert bobs.evaluate("window.__loadedOnce") is True
    shoot(laptop, "web-ada-laptop")
    shoot(phone, "web-ada-phone")
    shoot(bobs, "web-bob")


def test_the_assistant_panel_adds_and_completes_tasks_that_show_live_in_the_users_other_tab(system, browser):
    in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    laptop = signed_in_page(browser, system, "ada")
    phone = signed_in_page(browser, system, "ada", viewport={"width": 390, "height": 844})

    laptop.get_by_role("button", name="Assistant").click()
    chat = laptop.locator("#chat-panel")
    chat.get_by_label("Message to the assistant").fill("add buy milk on Dec 16 2030 at 5pm #shopping")
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".chat-message.assistant").last).to_have_text(
        "Added 'buy milk' for Mon 16 Dec 17:00 (#shopping).", timeout=30_000
    )
    milk = task_item(phone, "buy milk")
    expect(milk).to_be_visible(timeout=WARM_UP_TIMEOUT_MS)
    expect(milk).to_contain_text("#shopping")

    chat.get_by_label("Message to the assistant").fill("mark buy milk as done")
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".chat-message.assistant").last).to_have_text("Completed 'buy milk'.", timeout=30_000)
    expect(task_item(phone, "buy milk")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)  # left All open
    phone.get_by_role("button", name="Completed", exact=True).click()
    expect(task_item(phone, "buy milk")).to_have_class(DONE)

    chat.get_by_label("Message to the assistant").fill("sing me a song")
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator(".chat-message.assistant").last).to_contain_text("Sorry, I did not understand", timeout=30_000)
    shoot(laptop, "web-chat-panel")
    assert laptop.evaluate("window.__loadedOnce") is True and phone.evaluate("window.__loadedOnce") is True


def test_a_reminder_notification_pops_up_as_a_toast_for_its_user_only(system, browser):
    ada = in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    in_thread(User.objects.create_user, "bob", password=PASSWORD)
    page = signed_in_page(browser, system, "ada")
    bobs = signed_in_page(browser, system, "bob")

    # What the notification service does when a reminder comes due (its push is the toast).
    in_thread(deliver_reminder, user=ada, reminder_id="6f0c7e0e-8a44-4d4b-9f59-1b2f8f3f6a10", task_id="0b9f3c3e-1d55-4c1e-9a55-6c1f1d3a9e42",
                     title="Call the dentist", due_at=None)

    toast = page.locator(".toast", has_text="Call the dentist")
    expect(toast).to_be_visible(timeout=5_000)
    expect(page.locator("#unread-count")).to_have_text("1")
    shoot(page, "web-reminder-toast")
    page.get_by_role("button", name="Notifications, 1 unread").click()
    page.get_by_role("button", name="Mark “Call the dentist” read").click()
    expect(page.locator("#unread-count")).to_be_hidden()
    expect(bobs.locator(".toast")).to_have_count(0)
    expect(bobs.locator("#unread-count")).to_be_hidden()


def test_a_reminder_coming_due_shows_a_toast_without_reload(system, browser):
    in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    page = signed_in_page(browser, system, "ada")
    remind_at = timezone.now() + timedelta(seconds=5)
    due = remind_at + timedelta(minutes=5)
    # The form sets reminders to the minute; a reminder seconds ahead is made through the same
    # session API call the page makes.
    response = page.evaluate(
        """async ([due, remind]) => {
            const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken=")).slice(10);
            const r = await fetch("/api/tasks/", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
              body: JSON.stringify({title: "Take the cake out", due_date: due, remind_at: remind})});
            return r.status;
        }""",
        [due.isoformat(), remind_at.isoformat()],
    )
    assert response == 201
    toast = page.locator(".toast", has_text="Take the cake out")
    expect(toast).to_be_visible(timeout=60_000)
    shoot(page, "web-reminder-due-toast")
