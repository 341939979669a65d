"""Smart quick-add and the assistant (issue 13, items 2 and 3), in real headless Chromium against
the real processes (the fixtures of test_web_browser.py)."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from tasks.models import Task, User
from tests.tasks.web.test_web_browser import (  # noqa: F401 (system and browser are fixtures)
    PASSWORD,
    WARM_UP_TIMEOUT_MS,
    browser,
    in_thread,
    pytestmark,
    shoot,
    signed_in_page,
    system,
    task_item,
)

PARIS = ZoneInfo("Europe/Paris")


def label(moment):
    """A time as the chips and the assistant's replies say it: "Wed 16 Dec 09:00"."""
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def tasks_titled(title):
    return list(Task.objects.filter(title=title))


def test_quick_add_shows_what_it_read_as_removable_chips_and_creates_the_task_with_those_fields(system, browser):
    in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    page = signed_in_page(browser, system, "ada")
    quick = page.get_by_label("New task title")
    chips = page.locator("#quick-chips")

    quick.press_sequentially("Buy bread tomorrow 9am p1 #shopping", delay=20)
    tomorrow_nine = datetime.combine(datetime.now(PARIS).date() + timedelta(days=1), datetime.min.time(), PARIS).replace(hour=9)
    expect(chips.locator(".quick-chip")).to_have_count(3)
    expect(chips.locator(".quick-chip.due-date")).to_have_text(re.compile(rf"Due\s*{label(tomorrow_nine)}"))
    expect(chips.locator(".quick-chip.priority")).to_contain_text("P1 Urgent")
    expect(chips.locator(".quick-chip.tags")).to_contain_text("#shopping")
    shoot(page, "quickadd-chips")
    quick.press("Enter")

    expect(task_item(page, "Buy bread")).to_be_visible(timeout=WARM_UP_TIMEOUT_MS)
    expect(quick).to_have_value("")
    expect(chips).to_be_hidden()
    [bread] = in_thread(tasks_titled, "Buy bread")
    assert (bread.priority, bread.tags, bread.due_date) == (1, ["shopping"], tomorrow_nine)
    expect(task_item(page, "Buy bread")).to_contain_text("#shopping")

    # A removed chip gives its words back to the title; the rest is still read.
    quick.press_sequentially("Water plants every Monday p3", delay=20)
    expect(chips.locator(".quick-chip.priority")).to_contain_text("P3 Medium")
    page.get_by_role("button", name=re.compile(r"^Remove priority P3 Medium")).click()
    expect(chips.locator(".quick-chip.priority")).to_have_count(0)
    expect(chips.locator(".quick-chip.recurrence-rule")).to_contain_text("every Monday")
    expect(quick).to_be_focused()
    quick.press("Enter")
    expect(task_item(page, "Water plants p3")).to_be_visible()
    [plants] = in_thread(tasks_titled, "Water plants p3")
    assert (plants.priority, plants.recurrence_rule) == (4, "FREQ=WEEKLY;BYDAY=MO")
    assert plants.due_date.astimezone(PARIS).weekday() == 0

    # What cannot be a task says why, and nothing is created.
    quick.fill("Meeting at 25:00")
    expect(page.locator("#quick-hint")).to_contain_text("is not a time of day")
    quick.press("Enter")
    expect(page.locator("#quick-error")).to_contain_text("is not a time of day")
    assert in_thread(Task.objects.count) == 2

    phone = signed_in_page(browser, system, "ada", viewport={"width": 390, "height": 844})
    phone.get_by_label("New task title").press_sequentially("Call mom friday 6pm remind me 1h before #family", delay=10)
    expect(phone.locator("#quick-chips .quick-chip")).to_have_count(3)
    shoot(phone, "quickadd-chips-phone")


def test_the_assistant_does_the_common_requests_right_and_its_conversation_survives_a_reload(system, browser):
    in_thread(User.objects.create_user, "ada", password=PASSWORD, timezone="Europe/Paris")
    page = signed_in_page(browser, system, "ada")
    page.get_by_role("button", name="Assistant").click()
    chat = page.locator("#chat-panel")
    replies = chat.locator(".chat-message.assistant")

    def say(message):
        count = replies.count()
        chat.get_by_label("Message to the assistant").fill(message)
        chat.get_by_role("button", name="Send").click()
        expect(replies).to_have_count(count + 1, timeout=30_000)
        return replies.last

    say("add slides #work")
    say("add groceries #home")
    tagged = say("show tasks tagged work")
    expect(tagged).to_contain_text("1 task:")
    expect(tagged).to_contain_text("'slides'")
    expect(tagged).not_to_contain_text("groceries")

    expect(say("add pay rent on the 1st of every month")).to_contain_text("Added 'pay rent' for")
    [rent] = in_thread(tasks_titled, "pay rent")
    assert rent.recurrence_rule == "FREQ=MONTHLY;BYMONTHDAY=1"
    assert rent.due_date > datetime.now(PARIS) and rent.due_date.astimezone(PARIS).day == 1

    say("add water the plants high priority")
    expect(task_item(page, "water the plants")).to_contain_text("P2", timeout=WARM_UP_TIMEOUT_MS)

    say("add later one in 2 minutes")
    say("add sooner one in 1 minute")
    due = say("what is due this week?")
    expect(due).to_contain_text("'sooner one'")
    text = due.inner_text()
    assert text.index("'sooner one'") < text.index("'later one'")

    say("add dentist appointment tomorrow at 10am, remind me 1 hour before")
    moved = say("move the dentist appointment to friday at 2pm")
    expect(moved).to_contain_text("Updated 'dentist appointment' for Fri")
    [dentist] = in_thread(tasks_titled, "dentist appointment")
    assert dentist.due_date.astimezone(PARIS).strftime("%a %H:%M") == "Fri 14:00"
    assert dentist.due_date - dentist.remind_at == timedelta(hours=1)
    shoot(page, "assistant-requests")

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=20_000)
    page.get_by_role("button", name="Assistant").click()
    log = page.locator("#chat-log")
    expect(log.locator(".chat-message.user")).to_have_count(10)
    expect(log.locator(".chat-message.user").first).to_have_text("add slides #work")
    expect(log.locator(".chat-message.assistant").last).to_contain_text("Updated 'dentist appointment'")
    # ...and the conversation goes on where it was.
    chat = page.locator("#chat-panel")
    chat.get_by_label("Message to the assistant").fill("mark slides as done")
    chat.get_by_role("button", name="Send").click()
    expect(log.locator(".chat-message.assistant").last).to_have_text("Completed 'slides'.", timeout=30_000)
    assert in_thread(lambda: Task.objects.get(title="slides").completed)
    shoot(page, "assistant-history-after-reload")
