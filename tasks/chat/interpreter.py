"""The built-in chat interpreter: one plain-English message becomes task tool calls. Its task
parser is also the web app's smart quick-add (``parse_task``, ``POST /api/tasks/parse/``).

Used when no language model is configured. It is deterministic: the same message, time zone
and ``now`` always give the same calls, so it is tested phrase by phrase.

    interpret("add buy milk tomorrow at 5pm #shopping", timezone="Europe/Paris", now=now)
    -> Interpretation(tool_calls=[{"name": "add_task", "arguments": {
           "title": "buy milk", "due_date": "2026-12-16T16:00:00Z", "tags": ["shopping"]}}])

    parse_task("Buy bread tomorrow 9am p1 #shopping", timezone="Europe/Paris", now=now)
    -> ParsedTask(fields={"title": "Buy bread", "due_date": "2026-12-16T08:00:00Z", "priority": 1,
                          "tags": ["shopping"]},
                  spans=[Span("due_date", 10, 18), Span("due_date", 19, 22), Span("priority", 23, 25),
                         Span("tags", 26, 35)])

How a message is read:
- Its first words decide the intent (reopen, complete, delete, update, list/search, add), by a
  short list of patterns per intent, tried in that order.
- An add message (and a quick-add text, which is all task) is then taken apart by ``parse_task``'s
  extractors, each of which finds one kind of phrase, records its value and blanks it out of the
  text, keeping the positions of the rest: a leading "remind me to", description ("note: ..."),
  tags ("#x"), reminder ("remind me 1 hour before", "1h before"), recurrence ("every Monday",
  built by ``tasks.recurrence_rules.rule_text``), priority ("urgent", "p2"), time ("at 5pm") and date
  ("tomorrow", "next Friday", "on Dec 20", "in 2 hours"). What is left is the title. Each phrase
  is reported as a ``Span`` of the field it set, so that the web app can show it as a chip; the
  ranges a user took back (``ignore``) are not read and stay in the title.
- Times are wall-clock times in the user's time zone, converted to UTC (``...Z``). A date
  without a time means 09:00; "morning" 09:00, "afternoon" 14:00, "evening" 18:00, "tonight"
  20:00; a bare "at 8" is 08:00 (24-hour reading). A time without a date is today if still
  ahead, else tomorrow. A weekday ("Friday", "this Friday") is the next such day, today
  included while the time is still ahead; "next Friday" is the next such day after today; "on
  the 1st" is likewise the next 1st, today only while the time is still ahead. A month and day
  without a year is the next such date from today on.
- A recurring task without a date is first due at the rule's next occurrence after now ("pay
  rent on the 1st of every month" on the evening of the 1st: the next month's 1st).
- Tags are lower-cased. Priorities are the app's names (``events.schemas.PRIORITY_NAMES``):
  urgent, highest, asap, p1 -> 1; high, p2 -> 2; medium, normal, p3 -> 3; low, lowest, p4 -> 4.
- "Show my tasks" lists open tasks; "all" lists every task, "completed" the completed ones;
  "tagged work" (or "#work") only those with the tag; a list by due time ("what is due this
  week?") is sorted by due time.
- Tasks named by title go out as ``task_title`` (see ``tasks.chat.tools``); reopening is
  ``update_task`` with ``completed: false``.
Anything else gets a plain "did not understand" reply and no tool call.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from events.schemas import MAX_TAGS, PRIORITY_NAMES, TAG_MAX_LENGTH, TITLE_MAX_LENGTH
from tasks.chat.tools import ADD_TASK, COMPLETE_TASK, DELETE_TASK, LIST_TASKS, UPDATE_TASK
from tasks.recurrence_rules import InvalidRecurrenceRule, first_occurrence_after, rule_text

DEFAULT_TIME = time(9, 0)
PART_OF_DAY_TIMES = {
    "morning": time(9, 0),
    "afternoon": time(14, 0),
    "evening": time(18, 0),
    "night": time(20, 0),
    "tonight": time(20, 0),
}

HELP = (
    "I can add, list, find, complete, reopen, move and delete tasks, for example: "
    "\"add buy milk tomorrow at 5pm #shopping\", \"remind me to call mom on Friday at 6pm, 30 minutes before\", "
    "\"add team meeting every Monday at 10am\", \"what's due today\", \"find tasks about milk\", "
    "\"mark buy milk as done\", \"reopen groceries\", \"delete the dentist task\"."
)


@dataclass(frozen=True)
class Interpretation:
    """The tool calls a message asks for, or, when there are none, the reply that says why."""

    tool_calls: list = field(default_factory=list)
    reply: str = ""

    @property
    def understood(self):
        return bool(self.tool_calls)


class NotUnderstood(Exception):
    """The message is not one the interpreter can turn into tool calls; the text says why, and
    ``field`` names the task field at fault when there is one (for the parse API's 400)."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def interpret(message, *, timezone, now):
    """Read ``message`` for a user in the IANA ``timezone`` at the aware datetime ``now``."""
    clock = _Clock(ZoneInfo(timezone), now)
    text = _normalize(message)
    try:
        for reader in _READERS:
            call = reader(text, clock)
            if call is not None:
                return Interpretation(tool_calls=[call])
        raise NotUnderstood(f"Sorry, I did not understand {message.strip()!r}.")
    except NotUnderstood as error:
        return Interpretation(reply=f"{error} {HELP}")
    except OverflowError:  # date arithmetic past year 9999 ("in 99999999999 days", a reminder before year 1)
        return Interpretation(reply=f"That date is out of range. {HELP}")


class _Clock:
    """The user's time zone and now, and the conversions between their wall time and UTC."""

    def __init__(self, zone, now):
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.zone = zone
        self.now = now.astimezone(zone)
        self.today = self.now.date()

    def at(self, day, wall_time):
        return datetime.combine(day, wall_time, tzinfo=self.zone)


def _utc(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _call(name, **arguments):
    return {"name": name, "arguments": arguments}


def _normalize(message):
    text = " ".join(message.strip().split())
    text = re.sub(r"(?<![\s.!?])[\s.!?]+$", "", text)  # (from a run's start only: linear)
    text = re.sub(r"^(?:(?:hey|hi|ok|okay|please|pls|can you|could you|would you|will you)[\s,]+)+", "", text, flags=re.I)
    return re.sub(r"(?<![\s,])[\s,]+(?:please|pls|thanks|thank you)$", "", text, flags=re.I)


# --- vocabulary --------------------------------------------------------------------------------

WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
FULL_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
ANY_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues|tue|wed|thurs|thur|thu|fri|sat|sun)"
WEEKDAY_LIST = rf"{ANY_WEEKDAY}s?(?:(?:\s*,\s*|\s+and\s+|\s*,\s*and\s+){ANY_WEEKDAY}s?)*"

MONTHS = {
    name: number
    for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")],
        start=1,
    )
    for name in names
}  # fmt: skip
MONTH = r"(?:january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
ORDINAL = r"(?:st|nd|rd|th)"

NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty-five": 45,
}  # fmt: skip
AMOUNT = r"(?:\d+|a couple of|half an|forty-five|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + ")"
# "1h" and "30m" too; a unit is a whole word ("5 mon..." is no unit), "m" is never months.
DURATION_UNIT = r"(?:(?:minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)\b)"

# The app's names of the priorities, and a few words people use for them.
PRIORITY_WORDS = {name.lower(): number for number, name in PRIORITY_NAMES.items()} | {
    "highest": 1, "normal": 3, "lowest": 4,
}  # fmt: skip
PRIORITY_WORD = "(?:" + "|".join(sorted(PRIORITY_WORDS, key=len, reverse=True)) + ")"


def _amount(word):
    word = word.lower()
    if word == "half an":
        return 0.5
    if word == "a couple of":
        return 2
    return int(word) if word.isdigit() else NUMBER_WORDS[word]


def _duration(amount, unit):
    """A DURATION_UNIT amount: every unit's first letter tells it (minutes, hours, days, weeks)."""
    name = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit[0].lower()]
    return timedelta(**{name: amount})


def _weekdays(words):
    days = []
    for word in re.findall(ANY_WEEKDAY + "s?", words, flags=re.I):
        word = word.lower()
        day = WEEKDAYS[word if word in WEEKDAYS else word[:-1]]  # "mondays"
        if day not in days:
            days.append(day)
    return sorted(days)


# --- the text being taken apart -----------------------------------------------------------------


# Stands in for the characters of a range the parser must not read: no pattern matches it.
_MASK = "\ufffc"


class _Text:
    """A message from which extractors cut the phrases they understood.

    A cut phrase is blanked with as many spaces, so that every position still is the original
    one: ``taken`` lists the ranges cut, for the spans of ``parse_task``. The ``ignore`` ranges
    are masked: nothing reads them, and ``rest()`` gives them back as they were.
    """

    def __init__(self, text, *, ignore=()):
        self.original = text
        chars = list(text)
        for start, end in ignore:
            start, end = max(0, start), min(len(chars), end)
            chars[start:end] = _MASK * max(0, end - start)
        self.text = "".join(chars)
        self.taken = []

    def take(self, pattern):
        """Find ``pattern`` (case-insensitive), cut it out and return the match, or None."""
        match = re.search(pattern, self.text, flags=re.I)
        if match and match.end() > match.start():
            self.text = f"{self.text[: match.start()]}{' ' * (match.end() - match.start())}{self.text[match.end():]}"
            self.taken.append((match.start(), match.end()))
        return match

    def rest(self):
        """The text not taken, with the ignored ranges as they were."""
        return "".join(original if char == _MASK else char for char, original in zip(self.text, self.original))


# --- extractors: each one finds one kind of phrase ---------------------------------------------

# Before a run of separators that a phrase takes along ("..., remind me"): the match may start
# only where the run starts, so that a long run (a blanked phrase is one) is not rescanned from
# each of its characters (quadratic work on a long text).
_SEPARATORS_BEFORE = r"(?<![\s,;:-])"


def _take_description(text):
    match = text.take(rf"{_SEPARATORS_BEFORE}[\s,;:-]*\b(?:notes?|description|details)\s*:\s*(?P<description>.+)$")
    return match["description"].strip() if match else None


def _take_tags(text):
    tags = []
    while match := text.take(r"(?<![\w#])#(?P<tag>[\w-]+)"):
        tag = match["tag"].lower()
        if tag not in tags:
            tags.append(tag)
    return tags


def _take_priority(text):
    match = text.take(
        r"\b(?:with\s+|at\s+|as\s+)?(?:an?\s+)?(?:"
        r"p(?P<p>[1-4])|priority\s*(?P<number>[1-4])"
        rf"|(?P<level>{PRIORITY_WORD})\s+priority"
        rf"|priority\s+(?P<level_after>{PRIORITY_WORD})"
        r"|(?P<urgent>urgent(?:ly)?|asap))\b"
    )
    if not match:
        return None
    if match["p"] or match["number"]:
        return int(match["p"] or match["number"])
    if match["urgent"]:
        return 1
    return PRIORITY_WORDS[(match["level"] or match["level_after"]).lower()]


@dataclass(frozen=True)
class _Reminder:
    before: timedelta | None = None  # "remind me 1 hour before"
    at: time | None = None  # "remind me at 4pm" (on the due day)


def _take_reminder(text):
    lead = rf"(?:{_SEPARATORS_BEFORE}[\s,;]*(?:and\s+)?)\b(?:remind\s+me|with\s+a\s+reminder|reminder|alert\s+me|notify\s+me)"
    # "remind me 1 hour before", or after "remind me to ..." just ", 30 minutes before".
    match = text.take(
        rf"(?:{lead}\s+)?\b(?:(?P<amount>{AMOUNT})\s*(?P<unit>{DURATION_UNIT})|the\s+(?P<day>day))"
        r"\s+(?:before|earlier|ahead|in\s+advance|prior)\b"
    )
    if match:
        if match["day"]:
            return _Reminder(before=timedelta(days=1))
        try:
            return _Reminder(before=_duration(_amount(match["amount"]), match["unit"]))
        except OverflowError:
            raise NotUnderstood(f"{match[0].strip()!r} is too long before.", field="remind_at") from None
    match = text.take(lead + r"\s+at\s+(?P<time>[^,;]+?)(?=$|[,;]|\s+(?:and|with|on|#))")
    if match:
        wall_time = _take_time(_Text("at " + match["time"]))
        if wall_time is None:
            raise NotUnderstood(f"I could not read the reminder time {match['time']!r}.", field="remind_at")
        return _Reminder(at=wall_time)
    return None


@dataclass(frozen=True)
class _Recurrence:
    rule: str
    first_rule: str  # the rule without its INTERVAL, to find where a series without a date starts
    wall_time: time | None = None  # "every morning"


def _recurrence(frequency, interval=1, *, weekdays=(), month_day=None, wall_time=None):
    """The rule of a recurrence phrase, built by the one RRULE definition (tasks.recurrence_rules)."""
    try:
        rule = rule_text(frequency, interval=interval, weekdays=weekdays, month_day=month_day)
        first_rule = rule_text(frequency, weekdays=weekdays, month_day=month_day)
    except InvalidRecurrenceRule as error:
        raise NotUnderstood(str(error), field="recurrence_rule") from None
    return _Recurrence(rule, first_rule, wall_time)


def _take_recurrence(text):
    if text.take(r"\b(?:every|each|on)\s+weekdays?\b|\bweekdays\b"):
        return _recurrence("WEEKLY", weekdays=range(5))
    if text.take(r"\b(?:every|each|on)\s+weekends?\b"):
        return _recurrence("WEEKLY", weekdays=(5, 6))
    if match := text.take(r"\b(?:every|each)\s+(?P<part>morning|afternoon|evening|night)\b"):
        return _recurrence("DAILY", wall_time=PART_OF_DAY_TIMES[match["part"].lower()])
    # "the 1st of every month" before "every month", which would leave "the 1st" to be a date.
    if match := text.take(
        rf"\b(?:(?:on\s+)?the\s+|every\s+)(?P<monthday>\d{{1,2}}){ORDINAL}\s+(?:day\s+)?of\s+(?:every|each|the)\s+month\b"
    ):
        return _recurrence("MONTHLY", month_day=int(match["monthday"]))
    match = text.take(
        r"\b(?:every|each)\s+(?:(?P<n>\d+|other|two|three|four|six)\s+)?(?P<unit>day|week|month|year)s?\b"
        rf"(?:\s+on\s+(?:(?P<days>{WEEKDAY_LIST})|(?:the\s+)?(?P<monthday>\d{{1,2}}){ORDINAL}?|the\s+(?P<last>last)\s+day))?"
    )
    if match:
        interval = {"other": 2}.get((match["n"] or "").lower()) or _amount(match["n"] or "1")
        freq = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}[match["unit"].lower()]
        if match["days"]:
            return _recurrence(freq, interval, weekdays=_weekdays(match["days"]))
        if match["monthday"] or match["last"]:
            return _recurrence(freq, interval, month_day=-1 if match["last"] else int(match["monthday"]))
        return _recurrence(freq, interval)
    if match := text.take(rf"\b(?:every|each)\s+(?P<days>{WEEKDAY_LIST})\b"):
        return _recurrence("WEEKLY", weekdays=_weekdays(match["days"]))
    if match := text.take(r"\b(?P<freq>daily|weekly|monthly|yearly|annually)\b"):
        word = match["freq"].lower()
        return _recurrence({"daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY"}.get(word, "YEARLY"))
    return None


def _take_time(text):
    """A wall-clock time: "at 5pm", "5:30 pm", "at 18:00", "at noon", "at 8" (08:00)."""
    at = r"(?:\b(?:at|by|@)\s*)"
    if match := text.take(rf"{at}?\b(?P<named>noon|midday|midnight)\b"):
        return time(0, 0) if match["named"].lower() == "midnight" else time(12, 0)
    if match := text.take(rf"{at}?\b(?P<hour>\d{{1,2}})(?::(?P<minute>\d{{2}}))?\s*(?P<half>[ap])\.?m\b\.?"):
        hour, minute = int(match["hour"]), int(match["minute"] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise NotUnderstood(f"{match[0].strip()!r} is not a time of day.", field="due_date")
        return time(hour % 12 + (12 if match["half"].lower() == "p" else 0), minute)
    match = text.take(rf"{at}?\b(?P<hour>\d{{1,2}})[:h](?P<minute>\d{{2}})\b") or text.take(
        rf"{at}\b(?P<hour>\d{{1,2}})\b(?!\s*(?:{DURATION_UNIT}|{ORDINAL}|%|/|-|\.\d))(?:\s*o'?clock)?"
    )
    if match:
        hour, minute = int(match["hour"]), int(match.groupdict().get("minute") or 0)
        if hour > 23 or minute > 59:
            raise NotUnderstood(f"{match[0].strip()!r} is not a time of day.", field="due_date")
        return time(hour, minute)
    return None


@dataclass(frozen=True)
class _When:
    """A date phrase: a day (with the time its words imply), or an exact instant ("in 2 hours")."""

    day: date | None = None
    implied_time: time | None = None
    instant: datetime | None = None
    # A weekday without "next", or "the 1st", may be today, but only while the time is still
    # ahead: after it, the phrase means this later day (next week's, next month's).
    later: date | None = None


def _date(year, month, day, phrase):
    try:
        return date(year, month, day)
    except ValueError:
        raise NotUnderstood(f"{phrase.strip()!r} is not a date.", field="due_date") from None


def _next_weekday(clock, weekday, *, include_today):
    ahead = (weekday - clock.today.weekday()) % 7
    if ahead == 0 and not include_today:
        ahead = 7
    return clock.today + timedelta(days=ahead)


def _take_date(text, clock):
    """A date phrase, or None: relative, named day, weekday, month and day, or ISO date."""
    part = r"(?:\s+(?:in\s+the\s+|at\s+)?(?P<part>morning|afternoon|evening|night))?"
    if match := text.take(rf"\bin\s+(?P<amount>{AMOUNT})\s*(?P<unit>{DURATION_UNIT}|months?)\b"):
        amount, unit = _amount(match["amount"]), match["unit"].lower()
        try:
            if unit.startswith("mo"):
                return _When(day=clock.today + relativedelta(months=int(amount)))
            if unit[0] in "mh":
                # An exact delay: counted in UTC, so that it stays exact across a DST change.
                return _When(instant=clock.now.astimezone(UTC) + _duration(amount, unit))
            return _When(day=clock.today + _duration(int(amount), unit))
        except (OverflowError, ValueError):  # past year 9999 (relativedelta says ValueError)
            raise NotUnderstood(f"{match[0].strip()!r} is too far away.", field="due_date") from None
    if text.take(r"\b(?:on\s+)?(?:the\s+)?day\s+after\s+tomorrow\b"):
        return _When(day=clock.today + timedelta(days=2))
    if text.take(r"\btonight\b"):
        return _When(day=clock.today, implied_time=PART_OF_DAY_TIMES["tonight"])
    if match := text.take(rf"\b(?:(?P<named>today|tomorrow|tmrw|tmr)|this(?=\s+(?:morning|afternoon|evening))){part}\b"):
        offset = 0 if (match["named"] or "today").lower() == "today" else 1
        return _When(day=clock.today + timedelta(days=offset), implied_time=_part_time(match["part"]))
    if text.take(r"\bnext\s+week\b"):
        return _When(day=_next_weekday(clock, 0, include_today=False))
    if text.take(r"\b(?:this\s+|on\s+the\s+)?weekend\b"):
        return _When(day=_next_weekday(clock, 5, include_today=True))
    match = text.take(rf"\b(?:(?P<which>next|this|coming|on)\s+(?P<day>{ANY_WEEKDAY})|(?P<bare>{FULL_WEEKDAY})){part}\b")
    if match:
        weekday = WEEKDAYS[(match["day"] or match["bare"]).lower()]
        is_next = (match["which"] or "").lower() == "next"
        day = _next_weekday(clock, weekday, include_today=not is_next)
        return _When(day=day, implied_time=_part_time(match["part"]), later=day + timedelta(days=7))
    if match := text.take(rf"\b(?:on\s+)?(?P<month>{MONTH})\.?\s+(?P<day>\d{{1,2}}){ORDINAL}?(?:,?\s+(?P<year>\d{{4}}))?\b"):
        return _When(day=_month_day(clock, match))
    if match := text.take(
        rf"\b(?:on\s+)?(?:the\s+)?(?P<day>\d{{1,2}}){ORDINAL}?\s+(?:of\s+)?(?P<month>{MONTH})\b\.?(?:,?\s+(?P<year>\d{{4}}))?"
    ):
        return _When(day=_month_day(clock, match))
    if match := text.take(r"\b(?:on\s+)?(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})\b"):
        return _When(day=_date(int(match["year"]), int(match["month"]), int(match["day"]), match[0]))
    if match := text.take(rf"\bon\s+the\s+(?P<day>\d{{1,2}}){ORDINAL}\b"):
        first, later = _month_days(clock, int(match["day"]))
        if first is None:
            raise NotUnderstood(f"{match[0].strip()!r} is not a date.", field="due_date")
        return _When(day=first, later=later)
    return None


def _month_days(clock, day):
    """The next two dates that are the ``day``th of a month, from today on (None when no month has it)."""
    found = []
    for months_ahead in range(5):  # the 31st: at most two months in a row lack it
        first = clock.today.replace(day=1) + relativedelta(months=months_ahead)
        try:
            candidate = first.replace(day=day)
        except ValueError:
            continue
        if candidate >= clock.today:
            found.append(candidate)
    return (found + [None, None])[:2]


def _part_time(part):
    return PART_OF_DAY_TIMES[part.lower()] if part else None


def _month_day(clock, match):
    """The date of "Dec 20" / "20th of December": the given year, else the next one from today."""
    month, day = MONTHS[match["month"].lower()], int(match["day"])
    if match["year"]:
        return _date(int(match["year"]), month, day, match[0])
    for year in range(clock.today.year, clock.today.year + 9):  # Feb 29 waits for a leap year
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= clock.today:
            return candidate
    raise NotUnderstood(f"{match[0].strip()!r} is not a date.", field="due_date")


def _due(clock, when, wall_time):
    """The due moment of a date phrase and a time, either of which may be missing."""
    if when is not None and when.instant is not None:
        if wall_time is not None:
            raise NotUnderstood("Please give either a time of day or a delay like 'in 2 hours', not both.", field="due_date")
        return when.instant.replace(second=0, microsecond=0)
    if when is None:
        if wall_time is None:
            return None
        due = clock.at(clock.today, wall_time)
        return due if due > clock.now else clock.at(clock.today + timedelta(days=1), wall_time)
    due = clock.at(when.day, wall_time or when.implied_time or DEFAULT_TIME)
    if when.later is not None and when.day == clock.today and due <= clock.now:
        due = clock.at(when.later, wall_time or when.implied_time or DEFAULT_TIME)
    return due


def _first_occurrence(clock, recurrence, wall_time):
    """The first time after now that a recurrence without a start date falls on.

    The interval is left out for this search: "every 2 weeks on Tuesday" starts next Tuesday,
    and the series counts its two weeks from there.
    """
    start = clock.at(clock.today, wall_time or recurrence.wall_time or DEFAULT_TIME)
    try:
        first = first_occurrence_after(recurrence.first_rule, start=start, after=clock.now, tz_name=clock.zone.key)
    except InvalidRecurrenceRule as error:
        raise NotUnderstood(str(error), field="recurrence_rule") from None
    if first is None:
        raise NotUnderstood("That recurrence never occurs.", field="recurrence_rule")
    return first


_TITLE_FILLER = (
    r"to|a|an|the|task|todo|to-do|new|reminder|that|called|named|titled|on|at|by|for|due|with|and|"
    r"in|from|starting|every|of|remind me|priority|to my (?:todo |to-do )?list|on my list"
)
# Whole words only: the "in" of "check-in" stays.
_LEADING_FILLER = re.compile(rf"(?:(?:(?:{_TITLE_FILLER})(?=\s|$)|[\s,;:.\-–—]+)\s*)+", re.I)
_TRAILING_FILLER = re.compile(rf"\s*(?:(?:^|(?<=\s))(?:{_TITLE_FILLER})|[\s,;:\-–—]+)$", re.I)
# Longer than any filler with its spaces: a trailing one starts within this many characters of the end.
_TRAILING_WINDOW = 40


def _clean_title(words):
    """The title left after the extractors took their phrases: no dangling little words."""
    title = " ".join(words.split())
    previous = None
    while title != previous:
        previous = title
        if leading := _LEADING_FILLER.match(title):
            title = title[leading.end() :]
        # Searched for near the end only: each word removed costs the same, however long the title.
        if trailing := _TRAILING_FILLER.search(title, max(0, len(title) - _TRAILING_WINDOW)):
            title = title[: trailing.start()]
        title = re.sub(r"\s+([,;:])", r"\1", title)
        title = " ".join(title.split())
    title = re.sub(r"^(['\"“‘])(.*)(['\"”’])$", r"\2", title).strip()
    return title


# --- the task parser: quick-add text, and the task of an "add ..." message ---------------------


@dataclass(frozen=True)
class Span:
    """A phrase the parser read: the task field it set, and where it stands in the text."""

    field: str
    start: int  # the index of its first character
    end: int  # the index after its last one


@dataclass(frozen=True)
class ParsedTask:
    """What a text would create: the add_task arguments (times in UTC, ``...Z``), and the phrases
    read for them, in text order (only those of fields that are set)."""

    fields: dict
    spans: list


def parse_task(text, *, timezone, now, ignore=()):
    """Read ``text``, all of it one task, for a user in the IANA ``timezone`` at the aware ``now``.

    ``ignore`` lists (start, end) ranges of ``text`` that must not be read (a preview chip the
    user removed): they stay in the title as typed. Raises NotUnderstood, whose ``field`` names
    the field at fault when there is one.
    """
    clock = _Clock(ZoneInfo(timezone), now)
    try:
        return _parse_task(_Text(text, ignore=ignore), clock)
    except OverflowError:  # date arithmetic past year 9999 ("in 99999999999 days", a reminder before year 1)
        raise NotUnderstood("That date is out of range.") from None


def _parse_task(text, clock):
    spans = []

    def read(field, extractor, *args):
        already = len(text.taken)
        value = extractor(text, *args)
        spans.extend(_span(field, text.original, start, end) for start, end in text.taken[already:])
        return value

    # The order matters: a description takes the rest of the text, tags and reminders go before
    # the times and dates inside them ("remind me 1 hour before"), a recurrence before its days.
    remind_me = read("remind_at", _take_remind_me)
    description = read("description", _take_description)
    tags = read("tags", _take_tags)
    reminder = read("remind_at", _take_reminder)
    recurrence = read("recurrence_rule", _take_recurrence)
    priority = read("priority", _take_priority)
    wall_time = read("due_date", _take_time)
    when = read("due_date", _take_date, clock)
    title = _clean_title(text.rest())
    if not title:
        raise NotUnderstood("What should the task be called?", field="title")
    if len(title) > TITLE_MAX_LENGTH:
        raise NotUnderstood(f"That title is longer than {TITLE_MAX_LENGTH} characters; please shorten it.", field="title")
    if len(tags) > MAX_TAGS:
        raise NotUnderstood(f"A task has at most {MAX_TAGS} tags.", field="tags")
    if any(len(tag) > TAG_MAX_LENGTH for tag in tags):
        raise NotUnderstood(f"A tag has at most {TAG_MAX_LENGTH} characters.", field="tags")

    if recurrence is not None and when is None:
        due = _first_occurrence(clock, recurrence, wall_time)
    else:
        due = _due(clock, when, wall_time)
    fields = {"title": title}
    if description:
        fields["description"] = description
    if due is not None:
        fields["due_date"] = _utc(due)
    if reminder is not None or remind_me:
        if due is None:
            if reminder is not None:
                raise NotUnderstood(
                    "A reminder needs a due date: say when the task is due, e.g. 'tomorrow at 5pm'.", field="remind_at"
                )
        else:
            fields["remind_at"] = _utc(_remind_at(clock, due, reminder))
    if priority is not None:
        fields["priority"] = priority
    if tags:
        fields["tags"] = tags
    if recurrence is not None:
        fields["recurrence_rule"] = recurrence.rule
    return ParsedTask(fields, sorted((span for span in spans if span.field in fields), key=lambda span: span.start))


def _take_remind_me(text):
    """A leading "remind me to": the task gets a reminder (at the due time unless told otherwise)."""
    return text.take(r"^\s*remind\s+me\b(?:\s+(?:to|about)\b)?") is not None


_SPAN_PADDING = " \t\n\r\f\v,;:"


def _span(field, text, start, end):
    """The span of a phrase cut from ``start`` to ``end``, without the separators it took along."""
    piece = text[start:end]
    start += len(piece) - len(piece.lstrip(_SPAN_PADDING))
    end -= len(piece) - len(piece.rstrip(_SPAN_PADDING))
    return Span(field, start, max(start, end))


# --- intents -------------------------------------------------------------------------------------

_TASK_REFERENCE_FILLER = r"(?:the|my|a|this|that|task|tasks|todo|to-do|item|called|named|titled)"


def _task_reference(words):
    """The arguments that name one task: ``task_id`` for a uuid, else ``task_title``."""
    ref = " ".join(words.split())
    ref = re.sub(rf"^(?:{_TASK_REFERENCE_FILLER}\s+)+", "", ref, flags=re.I)
    ref = re.sub(rf"(?:\s+{_TASK_REFERENCE_FILLER})+$", "", ref, flags=re.I)
    ref = re.sub(r"^(['\"“‘])(.*)(['\"”’])$", r"\2", ref).strip()
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ref, flags=re.I):
        return {"task_id": ref.lower()}
    if not ref or re.fullmatch(r"(?:it|that|this|them|as|one|the\s+one|everything|all)", ref, flags=re.I):
        raise NotUnderstood("Which task? Please name it by its title.")
    return {"task_title": ref}


def _first_match(patterns, text):
    for pattern in patterns:
        if match := re.fullmatch(pattern, text, flags=re.I):
            return match
    return None


REOPEN_PATTERNS = [
    r"(?:reopen|re-open|un-?complete|undo|restore|unfinish)\s+(?P<ref>.+)",
    r"(?:mark|set)\s+(?P<ref>.+?)\s+(?:as\s+)?(?:not\s+done|undone|open|incomplete|not\s+completed|not\s+finished|to\s+do|pending)",
]
COMPLETE_PATTERNS = [
    r"(?:mark|set|tick|check)\s+(?P<ref>.+?)\s+(?:as\s+)?(?:done|complete|completed|finished)",
    r"(?:complete|finish|check\s+off|tick\s+off|cross\s+off|close)\s+(?P<ref>.+)",
    r"(?:i\s+)?(?:have\s+|'ve\s+|just\s+)?(?:finished|completed|did|done\s+with)\s+(?P<ref>.+)",
    r"(?P<ref>.+?)\s+is\s+(?:done|finished|complete|completed)",
]
DELETE_PATTERNS = [r"(?:delete|remove|erase|trash|drop|cancel|get\s+rid\s+of|forget(?:\s+about)?)\s+(?P<ref>.+)"]


def _read_reopen(text, clock):
    if match := _first_match(REOPEN_PATTERNS, text):
        return _call(UPDATE_TASK, **_task_reference(match["ref"]), completed=False)
    return None


def _read_complete(text, clock):
    if match := _first_match(COMPLETE_PATTERNS, text):
        return _call(COMPLETE_TASK, **_task_reference(match["ref"]))
    return None


def _read_delete(text, clock):
    if match := _first_match(DELETE_PATTERNS, text):
        return _call(DELETE_TASK, **_task_reference(match["ref"]))
    return None


def _read_update(text, clock):
    """Move a task to another time, rename it, or change its priority."""
    if match := _first_match(
        [
            r"(?:move|reschedule|postpone|push(?:\s+back)?|delay)\s+(?P<ref>.+?)\s+(?:to|until|till)\s+(?P<when>.+)",
            r"(?:set|change)\s+(?:the\s+)?due\s+date\s+(?:of|for)\s+(?P<ref>.+?)\s+to\s+(?P<when>.+)",
        ],
        text,
    ):
        when_text = _Text(match["when"])
        wall_time = _take_time(when_text)
        due = _due(clock, _take_date(when_text, clock), wall_time)
        if due is None or _clean_title(when_text.text):
            raise NotUnderstood(f"I could not read the new date {match['when']!r}.")
        return _call(UPDATE_TASK, **_task_reference(match["ref"]), due_date=_utc(due))
    if match := _first_match(
        [
            r"rename\s+(?P<ref>.+?)\s+(?:to|as)\s+(?P<title>.+)",
            r"(?:change|set)\s+(?:the\s+)?(?:title|name)\s+(?:of|for)\s+(?P<ref>.+?)\s+to\s+(?P<title>.+)",
        ],
        text,
    ):
        title = re.sub(r"^(['\"“‘])(.*)(['\"”’])$", r"\2", match["title"].strip())
        return _call(UPDATE_TASK, **_task_reference(match["ref"]), title=title)
    if match := _first_match(
        [
            r"(?:set|change|make)\s+(?:the\s+)?priority\s+(?:of|for)\s+(?P<ref>.+?)\s+(?:to\s+)?(?P<priority>.+)",
            rf"(?:make|mark|set)\s+(?P<ref>.+?)\s+(?:as\s+|to\s+)?(?P<priority>urgent|{PRIORITY_WORD}\s+priority|p[1-4]|priority\s+[1-4])",
        ],
        text,
    ):
        priority_text = _Text(match["priority"])
        priority = _take_priority(priority_text) or PRIORITY_WORDS.get(priority_text.text.strip().lower())
        if priority is None:
            raise NotUnderstood(f"I could not read the priority {match['priority']!r}; say urgent, high, medium, low or p1 to p4.")
        return _call(UPDATE_TASK, **_task_reference(match["ref"]), priority=priority)
    return None


LIST_START = r"^(?:show|list|display|get|give|see|view|what|what's|whats|what\s+is|what\s+are|which|any|do\s+i\s+have|tell\s+me|how\s+many)\b"
LIST_SUBJECT = r"\b(?:tasks?|todos?|to-dos?|to\s+do|due|overdue|agenda|list)\b"
SEARCH_START = r"^(?:find|search|look\s+(?:for|up))\b(?:\s+for\b)?"


def _take_tagged(text):
    """ "tagged work", "tagged with work and home", "with the tag work": the tags, lower-cased."""
    word = r"#?[\w-]+"
    match = text.take(
        rf"\b(?:tagged|labell?ed)\s+(?:with\s+|as\s+)?(?P<tags>{word}(?:(?:\s*,\s*|\s+and\s+){word})*)"
        rf"|\bwith\s+(?:the\s+)?(?:tag|label)s?\s+(?P<named>{word}(?:(?:\s*,\s*|\s+and\s+){word})*)"
    )
    if not match:
        return []
    words = re.split(r"\s*,\s*|\s+and\s+", match["tags"] or match["named"])
    return list(dict.fromkeys(word.lstrip("#").lower() for word in words))


def _read_list(text, clock):
    """List or search the user's tasks: state, priority, tags, a due window, search words."""
    rest = _Text(text)
    is_search = rest.take(SEARCH_START) is not None
    if not is_search and not (re.match(LIST_START, text, flags=re.I) and re.search(LIST_SUBJECT, text, flags=re.I)):
        return None
    arguments = {}
    tags = _take_tagged(rest)
    tags += [tag for tag in _take_tags(rest) if tag not in tags]
    if tags:
        arguments["tag"] = tags
    if (priority := _take_priority(rest)) is not None:
        arguments["priority"] = priority
    if rest.take(r"\b(?:completed|done|finished|closed)\b"):
        arguments["completed"] = True
    elif rest.take(r"\b(?:all|every)\b") is None:
        rest.take(r"\b(?:open|pending|incomplete|remaining|unfinished|outstanding|left)\b")
        arguments["completed"] = False
    if rest.take(r"\boverdue\b|\bpast\s+due\b|\blate\b"):
        arguments["due_before"] = _utc(clock.now)
    elif rest.take(r"\bthis\s+week\b"):
        end = _next_weekday(clock, 6, include_today=True)
        arguments.update(due_after=_utc(clock.at(clock.today, time(0))), due_before=_utc(clock.at(end, time(23, 59, 59))))
    elif when := _take_date(rest, clock):
        day = (when.instant.astimezone(clock.zone).date()) if when.instant else when.day
        arguments.update(due_after=_utc(clock.at(day, time(0))), due_before=_utc(clock.at(day, time(23, 59, 59))))
    if "due_before" in arguments:  # what is due when: soonest first
        arguments["ordering"] = "due_date"
    search = rest.take(r"\b(?:about|containing|mentioning|matching|with|called|named|titled|for|like)\s+(?P<words>.+)$")
    words = search["words"] if search else (rest.text if is_search else "")
    words = re.sub(r"^(?:\s*(?:my|the|all|any)\b)*\s*(?:(?:tasks?|todos?|to-dos?)\b)?\s*", "", words, flags=re.I)
    words = re.sub(r"^(?:about|containing|mentioning|matching|with|called|named|for)\s+", "", words.strip(), flags=re.I)
    words = re.sub(r"^(['\"“‘])(.*)(['\"”’])$", r"\2", words.strip()).strip()
    if words:
        arguments["search"] = words
    elif is_search:
        raise NotUnderstood("What should I search for?")
    return _call(LIST_TASKS, **arguments)


ADD_PATTERNS = [
    r"(?P<rest>remind\s+me\s+.+)",  # parse_task reads "remind me to" itself
    r"(?:add|create|new|make|put|schedule|set\s+up|plan|note|jot\s+down)\s+(?:me\s+)?(?:a\s+)?(?:new\s+)?"
    r"(?:(?:task|todo|to-do|item)\b\s*(?::|to\b|called\b|named\b|titled\b)?)?\s*(?P<rest>.+)",
    r"(?:i\s+(?:need|have|must|should|want)\s+to|don't\s+forget\s+to|do\s+not\s+forget\s+to|todo:?|to-do:?)\s+(?P<rest>.+)",
]


def _read_add(text, clock):
    match = _first_match(ADD_PATTERNS, text)
    if not match:
        return None
    return _call(ADD_TASK, **parse_task(match["rest"], timezone=clock.zone.key, now=clock.now).fields)


def _remind_at(clock, due, reminder):
    """When to remind: at the due time, some time before it, or at a wall time on the due day
    (the day before when that time of the due day is already past the due time)."""
    if reminder is None:
        return due
    if reminder.before is not None:
        # Hours and minutes before are exact; days before keep the wall time across a DST change.
        return due - reminder.before if reminder.before.days else due.astimezone(UTC) - reminder.before
    due_local = due.astimezone(clock.zone)
    remind = clock.at(due_local.date(), reminder.at)
    return remind if remind <= due_local else clock.at(due_local.date() - timedelta(days=1), reminder.at)


# Intents in the order they are tried: the specific ones before "add", which takes anything.
_READERS = [_read_reopen, _read_complete, _read_delete, _read_update, _read_list, _read_add]
