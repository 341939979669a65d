"""The one task parser (``parse_task``) that smart quick-add and the chat's "add ..." share.

Each row is a typed text and what it must become: the add_task fields, and the phrases read for
each field (the preview chips). Unless a row says otherwise, the user lives in Europe/Paris
(UTC+1 in December) and it is Tuesday 15 December 2026, 11:30 local (10:30 UTC).
"""

import time
from datetime import UTC, datetime

import pytest

from events.schemas import MAX_TAGS, TAG_MAX_LENGTH, TITLE_MAX_LENGTH
from tasks.chat.interpreter import HELP, NotUnderstood, interpret, parse_task
from tasks.chat.serializers import MESSAGE_MAX_LENGTH
from tasks.chat.tools import ADD_TASK, validate_arguments

NOW = datetime(2026, 12, 15, 10, 30, tzinfo=UTC)
PARIS = "Europe/Paris"


def phrases(text, parsed):
    """{field: [the phrases read for it, in text order]}, from the spans."""
    found = {}
    for span in parsed.spans:
        found.setdefault(span.field, []).append(text[span.start : span.end])
    return found


# (text, expected fields, expected phrases per field)
QUICK_ADD = [
    # the phrase
    ("Buy bread tomorrow 9am p1 #shopping",
     {"title": "Buy bread", "due_date": "2026-12-16T08:00:00Z", "priority": 1, "tags": ["shopping"]},
     {"due_date": ["tomorrow", "9am"], "priority": ["p1"], "tags": ["#shopping"]}),
    ("Buy bread", {"title": "Buy bread"}, {}),
    ("Pay the rent", {"title": "Pay the rent"}, {}),
    # priorities by the app's names: P1 Urgent, P2 High, P3 Medium, P4 Low
    ("File taxes high priority", {"title": "File taxes", "priority": 2}, {"priority": ["high priority"]}),
    ("Fix the login bug urgent", {"title": "Fix the login bug", "priority": 1}, {"priority": ["urgent"]}),
    ("Tidy the garage p4", {"title": "Tidy the garage", "priority": 4}, {"priority": ["p4"]}),
    ("Water plants medium priority", {"title": "Water plants", "priority": 3}, {"priority": ["medium priority"]}),
    # not a priority: stays in the title
    ("Print form p9", {"title": "Print form p9"}, {}),
    ("Fix bug #work #Backend", {"title": "Fix bug", "tags": ["work", "backend"]}, {"tags": ["#work", "#Backend"]}),
    # reminders
    ("Dentist Friday 3pm remind me 1h before",
     {"title": "Dentist", "due_date": "2026-12-18T14:00:00Z", "remind_at": "2026-12-18T13:00:00Z"},
     {"due_date": ["Friday", "3pm"], "remind_at": ["remind me 1h before"]}),
    ("Call mom tomorrow at 6pm, remind me 30 minutes before",
     {"title": "Call mom", "due_date": "2026-12-16T17:00:00Z", "remind_at": "2026-12-16T16:30:00Z"},
     {"due_date": ["tomorrow", "at 6pm"], "remind_at": ["remind me 30 minutes before"]}),
    ("remind me to call the bank tomorrow at 10am",
     {"title": "call the bank", "due_date": "2026-12-16T09:00:00Z", "remind_at": "2026-12-16T09:00:00Z"},
     {"remind_at": ["remind me to"], "due_date": ["tomorrow", "at 10am"]}),
    ("Pay bills on the 20th, remind me the day before",
     {"title": "Pay bills", "due_date": "2026-12-20T08:00:00Z", "remind_at": "2026-12-19T08:00:00Z"},
     {"due_date": ["on the 20th"], "remind_at": ["remind me the day before"]}),
    # every ...: the rule from tasks.recurrence_rules; without a date, first due at its next occurrence
    ("Team meeting every Monday at 10am #work",
     {"title": "Team meeting", "due_date": "2026-12-21T09:00:00Z", "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO",
      "tags": ["work"]},
     {"recurrence_rule": ["every Monday"], "due_date": ["at 10am"], "tags": ["#work"]}),
    ("Standup every weekday at 9:30, remind me 15m before",
     {"title": "Standup", "due_date": "2026-12-16T08:30:00Z", "remind_at": "2026-12-16T08:15:00Z",
      "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"},
     {"recurrence_rule": ["every weekday"], "due_date": ["at 9:30"], "remind_at": ["remind me 15m before"]}),
    ("Pay rent on the 1st of every month p2",
     {"title": "Pay rent", "due_date": "2027-01-01T08:00:00Z", "recurrence_rule": "FREQ=MONTHLY;BYMONTHDAY=1",
      "priority": 2},
     {"recurrence_rule": ["on the 1st of every month"], "priority": ["p2"]}),
    ("Review every 2 weeks on Tuesday",
     {"title": "Review", "due_date": "2026-12-22T08:00:00Z", "recurrence_rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"},
     {"recurrence_rule": ["every 2 weeks on Tuesday"]}),
    ("Take vitamins every morning",
     {"title": "Take vitamins", "due_date": "2026-12-16T08:00:00Z", "recurrence_rule": "FREQ=DAILY"},
     {"recurrence_rule": ["every morning"]}),
    # a description takes the rest of the text
    ("Write notes tomorrow note: bring the slides",
     {"title": "Write notes", "due_date": "2026-12-16T08:00:00Z", "description": "bring the slides"},
     {"due_date": ["tomorrow"], "description": ["note: bring the slides"]}),
    # "in 2 hours" is an exact delay; a time already past today is tomorrow's
    ("Call the bank in 2 hours", {"title": "Call the bank", "due_date": "2026-12-15T12:30:00Z"},
     {"due_date": ["in 2 hours"]}),
    ("Stretch 9am", {"title": "Stretch", "due_date": "2026-12-16T08:00:00Z"}, {"due_date": ["9am"]}),
]


@pytest.mark.parametrize(("text", "fields", "read"), QUICK_ADD, ids=[row[0] for row in QUICK_ADD])
def test_a_quick_add_text_becomes_the_task_fields_and_the_phrases_it_read(text, fields, read):
    parsed = parse_task(text, timezone=PARIS, now=NOW)
    assert parsed.fields == fields
    assert phrases(text, parsed) == read
    validate_arguments(ADD_TASK, parsed.fields)  # what quick-add sends is a valid task


# (text, time zone, now, expected fields): the same words are other instants elsewhere and across DST.
TIME_ZONES = [
    # 10:30 UTC is 19:30 on the 15th in Tokyo and 02:30 on the 15th in Los Angeles.
    ("Call the office tomorrow 9am", "Asia/Tokyo", NOW, {"title": "Call the office", "due_date": "2026-12-16T00:00:00Z"}),
    ("Call the office tomorrow 9am", "America/Los_Angeles", NOW,
     {"title": "Call the office", "due_date": "2026-12-16T17:00:00Z"}),
    # On Kiritimati (UTC+14) it is already Wednesday the 16th: "tomorrow" is the 17th there.
    ("Call the office tomorrow 9am", "Pacific/Kiritimati", NOW,
     {"title": "Call the office", "due_date": "2026-12-16T19:00:00Z"}),
    # New York leaves daylight-saving time on Sunday 1 November 2026: 9am is 13:00Z on Saturday,
    # 14:00Z on Sunday; a weekly series keeps its 9am wall time.
    ("Run tomorrow 9am", "America/New_York", datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
     {"title": "Run", "due_date": "2026-11-01T14:00:00Z"}),
    ("Weekly review every Monday at 9am", "America/New_York", datetime(2026, 10, 31, 16, 0, tzinfo=UTC),
     {"title": "Weekly review", "due_date": "2026-11-02T14:00:00Z", "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO"}),
    # Paris enters summer time on Sunday 29 March 2026 (02:00 -> 03:00). 02:30 does not exist that
    # night and moves forward by the gap; an hour before 03:00 CEST is an exact hour (01:00 CET);
    # a day before keeps the wall time.
    ("Night shift Mar 29 at 2:30am", PARIS, datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
     {"title": "Night shift", "due_date": "2026-03-29T01:30:00Z"}),
    ("Night shift Mar 29 at 3am remind me 1h before", PARIS, datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
     {"title": "Night shift", "due_date": "2026-03-29T01:00:00Z", "remind_at": "2026-03-29T00:00:00Z"}),
    ("Brunch Mar 29 at 11am, remind me 1 day before", PARIS, datetime(2026, 3, 28, 9, 0, tzinfo=UTC),
     {"title": "Brunch", "due_date": "2026-03-29T09:00:00Z", "remind_at": "2026-03-28T10:00:00Z"}),
    # The case: on the evening of the 1st, "on the 1st of every month" is next month's.
    ("Pay rent on the 1st of every month", PARIS, datetime(2026, 12, 1, 21, 5, tzinfo=UTC),
     {"title": "Pay rent", "due_date": "2027-01-01T08:00:00Z", "recurrence_rule": "FREQ=MONTHLY;BYMONTHDAY=1"}),
    ("Pay rent on the 1st", PARIS, datetime(2026, 12, 1, 21, 5, tzinfo=UTC),
     {"title": "Pay rent", "due_date": "2027-01-01T08:00:00Z"}),
    # ...while its 09:00 is still ahead, it is today.
    ("Pay rent on the 1st", PARIS, datetime(2026, 12, 1, 7, 0, tzinfo=UTC),
     {"title": "Pay rent", "due_date": "2026-12-01T08:00:00Z"}),
]


@pytest.mark.parametrize(
    ("text", "timezone", "now", "fields"), TIME_ZONES, ids=[f"{row[0]} [{row[1]}, {row[2]:%Y-%m-%d %H:%M}Z]" for row in TIME_ZONES]
)
def test_times_are_read_in_the_users_zone_and_daylight_saving_changes_keep_wall_times(text, timezone, now, fields):
    assert parse_task(text, timezone=timezone, now=now).fields == fields


def test_a_removed_chip_leaves_its_words_in_the_title_and_unread():
    text = "Buy bread tomorrow 9am p1 #shopping"
    priority = text.index("p1")
    parsed = parse_task(text, timezone=PARIS, now=NOW, ignore=[(priority, priority + 2)])
    assert parsed.fields == {"title": "Buy bread p1", "due_date": "2026-12-16T08:00:00Z", "tags": ["shopping"]}
    assert "priority" not in phrases(text, parsed)

    # Both phrases of the due chip taken back: "9am" alone is no longer a time either.
    tomorrow, nine = text.index("tomorrow"), text.index("9am")
    parsed = parse_task(text, timezone=PARIS, now=NOW, ignore=[(tomorrow, tomorrow + 8), (nine, nine + 3)])
    assert parsed.fields == {"title": "Buy bread tomorrow 9am", "priority": 1, "tags": ["shopping"]}


def test_ranges_past_the_end_of_the_text_are_cut_at_its_end():
    assert parse_task("Buy bread p1", timezone=PARIS, now=NOW, ignore=[(50, 90)]).fields == {"title": "Buy bread", "priority": 1}
    assert parse_task("Buy bread p1", timezone=PARIS, now=NOW, ignore=[(10, 400)]).fields == {"title": "Buy bread p1"}


def test_the_chat_reads_the_task_of_an_add_message_with_the_same_parser():
    for text, fields, _ in QUICK_ADD:
        if text.lower().startswith("remind me"):
            continue  # already an intent of its own
        assert interpret(f"add {text}", timezone=PARIS, now=NOW).tool_calls == [{"name": ADD_TASK, "arguments": fields}]


# (text, the field named in the error, words of the message): a clear refusal, never a crash.
REFUSED = [
    ("tomorrow 9am p1", "title", "What should the task be called"),
    ("", "title", "What should the task be called"),
    ("Meeting at 25:00", "due_date", "is not a time of day"),
    ("Party on Feb 30", "due_date", "is not a date"),
    ("Call mom remind me 1h before", "remind_at", "A reminder needs a due date"),
    ("x" * (TITLE_MAX_LENGTH + 1), "title", f"longer than {TITLE_MAX_LENGTH} characters"),
    ("Tag soup " + " ".join(f"#t{n}" for n in range(MAX_TAGS + 1)), "tags", f"at most {MAX_TAGS} tags"),
    ("Long tag #" + "a" * (TAG_MAX_LENGTH + 1), "tags", f"at most {TAG_MAX_LENGTH} characters"),
    # absurd numbers
    ("Call in 99999999999 days", "due_date", "too far away"),
    ("Call in 99999999999999999999 hours", "due_date", "too far away"),
    ("Meet tomorrow remind me 99999999999 weeks before", "remind_at", "too long before"),
    ("Meet tomorrow remind me 900000000 days before", None, "out of range"),
    ("Water every 99999 days", "recurrence_rule", "INTERVAL"),
    ("Water every 0 days", "recurrence_rule", "INTERVAL"),
    ("Pay on the 45th of every month", "recurrence_rule", "BYMONTHDAY"),
    ("Call at 99:99", "due_date", "is not a time of day"),
]


@pytest.mark.parametrize(("text", "field", "message"), REFUSED, ids=[row[0][:60] or "(empty)" for row in REFUSED])
def test_a_text_that_cannot_be_a_task_is_refused_naming_the_field(text, field, message):
    with pytest.raises(NotUnderstood, match=message) as refused:
        parse_task(text, timezone=PARIS, now=NOW)
    assert refused.value.field == field


# Texts of the longest accepted length that once cost the parser quadratic work.
HOSTILE = {
    "spaced fillers": "a " * 1000,
    "separators": ", " * 1000,
    "every": "every " * 400,
    "on the": "on the " * 300,
    "remind me": "remind me " * 200,
    "tags": " ".join(f"#t{n}" for n in range(500)),
    "digits": "9" * 2000,
    "weekdays": "every " + ", ".join(["mon", "tue"] * 400),
    "delays": "in 2 " * 400,
    "dates": "Dec 20 " * 300,
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_longest_text_is_read_or_refused_quickly(text):
    text = text[:MESSAGE_MAX_LENGTH]
    assert len(text) == MESSAGE_MAX_LENGTH
    started = time.perf_counter()
    try:
        parsed = parse_task(text, timezone=PARIS, now=NOW)
    except NotUnderstood as refused:
        assert str(refused)
    else:
        validate_arguments(ADD_TASK, parsed.fields)
    interpretation = interpret(f"add {text}", timezone=PARIS, now=NOW)
    assert interpretation.understood or interpretation.reply.endswith(HELP)  # a reply, not a crash
    assert time.perf_counter() - started < 0.5
