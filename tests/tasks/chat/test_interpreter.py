"""The built-in interpreter, phrase by phrase: the exact tool calls each message becomes.

Unless a row says otherwise, the user lives in Europe/Paris (UTC+1 in December) and it is
Tuesday 15 December 2026, 11:30 local (10:30 UTC).
"""

from datetime import UTC, datetime

import pytest

from tasks.chat.interpreter import interpret
from tasks.chat.tools import validate_arguments

NOW = datetime(2026, 12, 15, 10, 30, tzinfo=UTC)
PARIS = "Europe/Paris"


def add(**arguments):
    return [{"name": "add_task", "arguments": arguments}]


def listing(**arguments):
    return [{"name": "list_tasks", "arguments": arguments}]


def call(name, **arguments):
    return [{"name": name, "arguments": arguments}]


# (message, expected tool calls)
PARIS_PHRASES = [
    # adding, with due dates and times
    ("add buy milk", add(title="buy milk")),
    ("Add buy milk tomorrow at 5pm #shopping", add(title="buy milk", due_date="2026-12-16T16:00:00Z", tags=["shopping"])),
    ("create a task to call the plumber tomorrow", add(title="call the plumber", due_date="2026-12-16T08:00:00Z")),
    ("add dentist next Friday", add(title="dentist", due_date="2026-12-18T08:00:00Z")),
    ("add pay rent on Dec 20 at 18:00", add(title="pay rent", due_date="2026-12-20T17:00:00Z")),
    # a month and day already past this year means next year
    ("add renew passport on Dec 10", add(title="renew passport", due_date="2027-12-10T08:00:00Z")),
    ("add conference on the 20th of December", add(title="conference", due_date="2026-12-20T08:00:00Z")),
    ("add conference December 20th 2027", add(title="conference", due_date="2027-12-20T08:00:00Z")),
    ("add party on 2026-12-31 at 9pm", add(title="party", due_date="2026-12-31T20:00:00Z")),
    ("add lunch with Sam at 12:30 on Dec 20", add(title="lunch with Sam", due_date="2026-12-20T11:30:00Z")),
    # "in 2 hours" is an exact delay from now
    ("add call the bank in 2 hours", add(title="call the bank", due_date="2026-12-15T12:30:00Z")),
    ("add call dad in 30 minutes", add(title="call dad", due_date="2026-12-15T11:00:00Z")),
    ("add take out the trash tonight", add(title="take out the trash", due_date="2026-12-15T19:00:00Z")),
    ("add buy bread tomorrow morning", add(title="buy bread", due_date="2026-12-16T08:00:00Z")),
    ("add meeting at noon", add(title="meeting", due_date="2026-12-15T11:00:00Z")),
    # a time already past today means tomorrow
    ("add stretch at 9am", add(title="stretch", due_date="2026-12-16T08:00:00Z")),
    ("add water the plants 3pm", add(title="water the plants", due_date="2026-12-15T14:00:00Z")),
    # a bare weekday that is today, with its time past, is next week's
    ("add report due Tuesday at 8am", add(title="report", due_date="2026-12-22T07:00:00Z")),
    ("add report due Tuesday at 4pm", add(title="report", due_date="2026-12-15T15:00:00Z")),
    ("add gift shopping on Saturday afternoon", add(title="gift shopping", due_date="2026-12-19T13:00:00Z")),
    ("add write notes tomorrow note: bring the slides",
     add(title="write notes", description="bring the slides", due_date="2026-12-16T08:00:00Z")),
    # reminders
    ("remind me to call mom tomorrow at 5pm",
     add(title="call mom", due_date="2026-12-16T16:00:00Z", remind_at="2026-12-16T16:00:00Z")),
    ("remind me to call mom on Friday at 6pm, 30 minutes before",
     add(title="call mom", due_date="2026-12-18T17:00:00Z", remind_at="2026-12-18T16:30:00Z")),
    ("add dentist on Friday at 3pm, remind me 1 hour before",
     add(title="dentist", due_date="2026-12-18T14:00:00Z", remind_at="2026-12-18T13:00:00Z")),
    ("add flight check-in on Dec 22 at 07:15 and remind me 30 minutes before",
     add(title="flight check-in", due_date="2026-12-22T06:15:00Z", remind_at="2026-12-22T05:45:00Z")),
    ("add pay bills on the 20th, remind me the day before",
     add(title="pay bills", due_date="2026-12-20T08:00:00Z", remind_at="2026-12-19T08:00:00Z")),
    ("add gym tomorrow at 7am, remind me at 6am",
     add(title="gym", due_date="2026-12-16T06:00:00Z", remind_at="2026-12-16T05:00:00Z")),
    # priorities, by the app's names (P1 Urgent, P2 High, P3 Medium, P4 Low), and tags
    ("add fix the login bug urgent", add(title="fix the login bug", priority=1)),
    ("add high priority file taxes", add(title="file taxes", priority=2)),
    ("add fix bug p2 #work #Backend", add(title="fix bug", priority=2, tags=["work", "backend"])),
    ("add tidy the garage with low priority", add(title="tidy the garage", priority=4)),
    # recurrences: without a date the first due date is the rule's next occurrence
    ("add team meeting every Monday at 10am",
     add(title="team meeting", due_date="2026-12-21T09:00:00Z", recurrence_rule="FREQ=WEEKLY;BYDAY=MO")),
    ("add standup every weekday at 9:30",
     add(title="standup", due_date="2026-12-16T08:30:00Z", recurrence_rule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR")),
    ("add take vitamins every day at 8",
     add(title="take vitamins", due_date="2026-12-16T07:00:00Z", recurrence_rule="FREQ=DAILY")),
    ("add pay rent every month on the 1st",
     add(title="pay rent", due_date="2027-01-01T08:00:00Z", recurrence_rule="FREQ=MONTHLY;BYMONTHDAY=1")),
    ("add review every 2 weeks on Tuesday",
     add(title="review", due_date="2026-12-22T08:00:00Z", recurrence_rule="FREQ=WEEKLY;INTERVAL=2;BYDAY=TU")),
    ("add yoga every Monday and Thursday at 7pm #health",
     add(title="yoga", due_date="2026-12-17T18:00:00Z", tags=["health"], recurrence_rule="FREQ=WEEKLY;BYDAY=MO,TH")),
    ("add water the ferns every other day",
     add(title="water the ferns", due_date="2026-12-16T08:00:00Z", recurrence_rule="FREQ=DAILY;INTERVAL=2")),
    ("add backup weekly", add(title="backup", due_date="2026-12-22T08:00:00Z", recurrence_rule="FREQ=WEEKLY")),
    # an explicit date starts the series
    ("add piano lesson every Thursday starting Dec 24 at 5pm",
     add(title="piano lesson", due_date="2026-12-24T16:00:00Z", recurrence_rule="FREQ=WEEKLY;BYDAY=TH")),
    # listing and searching
    ("show my tasks", listing(completed=False)),
    ("show all tasks", listing()),
    # what is due when comes soonest first
    ("what's due today?", listing(completed=False, due_after="2026-12-14T23:00:00Z", due_before="2026-12-15T22:59:59Z",
                                  ordering="due_date")),
    ("what is due tomorrow", listing(completed=False, due_after="2026-12-15T23:00:00Z", due_before="2026-12-16T22:59:59Z",
                                     ordering="due_date")),
    ("what's due this week", listing(completed=False, due_after="2026-12-14T23:00:00Z", due_before="2026-12-20T22:59:59Z",
                                     ordering="due_date")),
    ("show overdue tasks", listing(completed=False, due_before="2026-12-15T10:30:00Z", ordering="due_date")),
    ("find tasks about milk", listing(completed=False, search="milk")),
    ("search for dentist", listing(completed=False, search="dentist")),
    ("show completed tasks", listing(completed=True)),
    ("list #work tasks", listing(tag=["work"], completed=False)),
    ("show high priority tasks", listing(priority=2, completed=False)),
    # completing, reopening, deleting and changing tasks named by title
    ("mark buy milk as done", call("complete_task", task_title="buy milk")),
    ('complete "Buy milk"', call("complete_task", task_title="Buy milk")),
    ("I finished the quarterly report", call("complete_task", task_title="quarterly report")),
    ("groceries is done", call("complete_task", task_title="groceries")),
    ("reopen groceries", call("update_task", task_title="groceries", completed=False)),
    ("mark the groceries task as not done", call("update_task", task_title="groceries", completed=False)),
    ("delete the dentist task", call("delete_task", task_title="dentist")),
    ("please remove buy milk", call("delete_task", task_title="buy milk")),
    ("delete task 6f1c2a9e-4b7d-4c1e-9a8b-3d2e1f0a9b8c", call("delete_task", task_id="6f1c2a9e-4b7d-4c1e-9a8b-3d2e1f0a9b8c")),
    ("move dentist to Friday at 4pm", call("update_task", task_title="dentist", due_date="2026-12-18T15:00:00Z")),
    ("rename buy milk to buy oat milk", call("update_task", task_title="buy milk", title="buy oat milk")),
    ("make report urgent", call("update_task", task_title="report", priority=1)),
    ("make report high priority", call("update_task", task_title="report", priority=2)),
    # the requests (issue 13, item 3)
    ("show tasks tagged work", listing(tag=["work"], completed=False)),
    ("show tasks tagged with work and home", listing(tag=["work", "home"], completed=False)),
    ("find tasks with the tag #work about slides", listing(tag=["work"], completed=False, search="slides")),
    ("add pay rent on the 1st of every month",
     add(title="pay rent", due_date="2027-01-01T08:00:00Z", recurrence_rule="FREQ=MONTHLY;BYMONTHDAY=1")),
    ("add water the plants high priority", add(title="water the plants", priority=2)),
    ("what is due this week?", listing(completed=False, due_after="2026-12-14T23:00:00Z", due_before="2026-12-20T22:59:59Z",
                                       ordering="due_date")),
    ("move the dentist appointment to friday at 2pm",
     call("update_task", task_title="dentist appointment", due_date="2026-12-18T13:00:00Z")),
    ("add dentist Friday 3pm remind me 1h before",
     add(title="dentist", due_date="2026-12-18T14:00:00Z", remind_at="2026-12-18T13:00:00Z")),
    ("set the priority of report to low", call("update_task", task_title="report", priority=4)),
]

# (message, time zone, now, expected tool calls): the same words mean other instants elsewhere.
TIME_ZONE_PHRASES = [
    # 10:30 UTC is 19:30 on the 15th in Tokyo and 02:30 on the 15th in Los Angeles.
    ("add call the office tomorrow at 9am", "Asia/Tokyo", NOW,
     add(title="call the office", due_date="2026-12-16T00:00:00Z")),
    ("add call the office tomorrow at 9am", "America/Los_Angeles", NOW,
     add(title="call the office", due_date="2026-12-16T17:00:00Z")),
    # On Kiritimati (UTC+14) it is already the 16th: "today" is another day than in Los Angeles.
    ("what's due today", "Pacific/Kiritimati", NOW,
     listing(completed=False, due_after="2026-12-15T10:00:00Z", due_before="2026-12-16T09:59:59Z", ordering="due_date")),
    ("what's due today", "America/Los_Angeles", NOW,
     listing(completed=False, due_after="2026-12-15T08:00:00Z", due_before="2026-12-16T07:59:59Z", ordering="due_date")),
    # New York leaves daylight-saving time on Sunday 1 November 2026: 9am is 13:00Z on
    # Saturday and 14:00Z on Sunday.
    ("add run tomorrow at 9am", "America/New_York", datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
     add(title="run", due_date="2026-11-01T14:00:00Z")),
    ("add run today at 5pm", "America/New_York", datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
     add(title="run", due_date="2026-10-31T21:00:00Z")),
    # Paris enters summer time on Sunday 29 March 2026: "in 24 hours" is an exact day later,
    # "tomorrow at 13:00" keeps the wall time and so is one hour earlier in UTC.
    ("add brunch tomorrow at 13:00", PARIS, datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
     add(title="brunch", due_date="2026-03-29T11:00:00Z")),
    ("add brunch in 24 hours", PARIS, datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
     add(title="brunch", due_date="2026-03-29T12:00:00Z")),
    # 2 hours before 03:00 summer time is 00:00 winter time: an exact 2 hours, not 01:00 wall time.
    ("add night shift on Mar 29 at 3am, remind me 2 hours before", PARIS, datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
     add(title="night shift", due_date="2026-03-29T01:00:00Z", remind_at="2026-03-28T23:00:00Z")),
    ("add weekly review every Monday at 9am", "America/New_York", datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
     add(title="weekly review", due_date="2026-11-02T14:00:00Z", recurrence_rule="FREQ=WEEKLY;BYDAY=MO")),
]

# (message, words the reply must contain)
NOT_UNDERSTOOD = [
    ("hello", "did not understand"),
    ("what's the weather like today?", "did not understand"),
    ("", "did not understand"),
    ("add", "did not understand"),
    ("add tomorrow at 5pm", "What should the task be called"),
    ("add call mom, remind me 1 hour before", "A reminder needs a due date"),
    ("add party on Feb 30", "is not a date"),
    ("add meeting at 25:00", "is not a time of day"),
    ("mark as done", "Which task"),
    ("delete it", "Which task"),
    ("move dentist to someday", "could not read the new date"),
    ("search for", "What should I search for"),
]


@pytest.mark.parametrize(("message", "expected"), PARIS_PHRASES, ids=[row[0] for row in PARIS_PHRASES])
def test_a_message_becomes_the_tool_calls_it_asks_for(message, expected):
    interpretation = interpret(message, timezone=PARIS, now=NOW)
    assert interpretation.tool_calls == expected
    assert interpretation.understood


@pytest.mark.parametrize(
    ("message", "timezone", "now", "expected"),
    TIME_ZONE_PHRASES,
    ids=[f"{row[0]} [{row[1]}, {row[2]:%Y-%m-%d}]" for row in TIME_ZONE_PHRASES],
)
def test_times_are_read_in_the_users_time_zone_and_sent_in_utc(message, timezone, now, expected):
    assert interpret(message, timezone=timezone, now=now).tool_calls == expected


@pytest.mark.parametrize(("message", "explanation"), NOT_UNDERSTOOD, ids=[row[0] or "(empty)" for row in NOT_UNDERSTOOD])
def test_a_message_it_cannot_read_gets_a_plain_reply_and_no_tool_call(message, explanation):
    interpretation = interpret(message, timezone=PARIS, now=NOW)
    assert interpretation.tool_calls == []
    assert not interpretation.understood
    assert explanation in interpretation.reply
    # The reply also says what it can do.
    assert "add buy milk tomorrow at 5pm" in interpretation.reply


@pytest.mark.parametrize("message", [row[0] for row in PARIS_PHRASES])
def test_every_call_it_emits_is_valid_for_its_tool(message):
    for tool_call in interpret(message, timezone=PARIS, now=NOW).tool_calls:
        validate_arguments(tool_call["name"], tool_call["arguments"])


def test_the_same_message_always_gives_the_same_calls():
    message = "add yoga every Monday and Thursday at 7pm #health, remind me 15 minutes before"
    first = interpret(message, timezone=PARIS, now=NOW)
    assert first.tool_calls[0]["arguments"]["remind_at"] == "2026-12-17T17:45:00Z"
    assert all(interpret(message, timezone=PARIS, now=NOW) == first for _ in range(3))


def test_now_must_be_an_aware_datetime():
    with pytest.raises(ValueError, match="aware"):
        interpret("add buy milk", timezone=PARIS, now=datetime(2026, 12, 15, 10, 30))
