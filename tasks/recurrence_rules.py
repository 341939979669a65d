"""Recurrence rules of recurring tasks: validation and next-occurrence arithmetic (pure, no I/O).

The one place that builds, validates and expands an RRULE: the Task model's validator, the
time-zone re-anchoring of tasks.accounts.services, the chat interpreter and the recurring-task
service (recurrence/) all use it. It lives in the task domain, below all of them.

A recurring task carries an RFC 5545 RRULE body without DTSTART (``FREQ=WEEKLY;BYDAY=MO``). Its
series starts at the due date of the series' first task and is expanded in the owner's IANA
time zone, in local wall time: "every Monday 09:00" stays 09:00 local when daylight saving time
begins or ends, so its UTC instant moves by an hour twice a year.

Decisions, each explained where it is implemented:

- The series is expanded from its start (the first task's due date), not from each completed
  task. COUNT then counts across the whole series, and a time that had to be moved because it
  fell into a daylight-saving gap cannot shift the wall time of all later occurrences.
- The series start is always the first occurrence, even when it does not match the rule
  (RFC 5545: "the DTSTART property value always counts as the first occurrence"). A task due
  on a Tuesday with ``FREQ=WEEKLY;BYDAY=MO;COUNT=3`` is followed by two Mondays.
- The next due date is the first occurrence strictly after the completed task's due date, in
  UTC. A due date that does not match the rule is followed by the rule's next occurrence,
  never by the one after it.
- Late completion: when that occurrence has already passed, the next task is due at the first
  occurrence strictly after *now* instead; the passed ones are skipped rather than created as a
  backlog of overdue tasks. Skipped occurrences still count towards COUNT: they belong to the
  series, only nobody needed a task for them.
- Local wall times that do not exist (spring-forward gap) are shifted forward by the length of
  the gap (02:30 on the night clocks jump from 02:00 to 03:00 becomes 03:30), and ambiguous ones
  (fall back) take their first instant, the one in daylight time. Both are RFC 5545's rules and
  are what ``zoneinfo`` does for ``fold=0``.
- UNTIL (inclusive) is accepted in UTC form (``20260101T000000Z``), as a local date-time
  (``20260101T090000``, read in the owner's zone) or as a date (``20260101``: up to the end of
  that local day). COUNT and UNTIL together are refused, as RFC 5545 requires.
- Bounded work. Validating and expanding any accepted rule costs milliseconds, whatever the
  series start (a due date in 1900 is as cheap as one today):
  - the expansion does not walk the occurrences since the series start: it jumps forward by
    whole periods (a multiple of INTERVAL, so the phase is kept) to just before the moment of
    interest. Only COUNT needs counting from the start, and COUNT is capped (MAX_COUNT);
  - MONTHLY and YEARLY rules are expanded one period at a time, and a search that finds no
    occurrence within HORIZON_YEARS ends there: dateutil itself checks UNTIL only against
    candidates, so a rule that never matches (BYSETPOS=100 of the Mondays of a month) would
    make it search every period up to year 9999 (seconds of CPU);
  - DAILY and WEEKLY rules step through every day or week; the filters that could make them
    match rarely or never (a day filter with INTERVAL above 1, whose phase can miss it for
    ever; a month, a day of the month and a weekday at once) are refused, with the MONTHLY
    or YEARLY rule that says the same;
  - BYSECOND is refused, BY* lists, the times of day, COUNT and INTERVAL are capped, and
    BYSETPOS selects among days at one time of day (the set it counts stays small).
  A rule without an occurrence within HORIZON_YEARS of a neutral start is refused as one that
  never occurs; one that stops occurring for longer from its real start ends its series.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrulestr


class InvalidRecurrenceRule(ValueError):
    """The text is not a recurrence rule this service can expand; the message is fit for users."""


SUPPORTED_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")

# How far a search for the next occurrence looks before it concludes there is none.
HORIZON_YEARS = 10
_HORIZON_DAYS = round(HORIZON_YEARS * 365.2425)
# The periods of each frequency within the horizon; also the largest INTERVAL, so that one step
# of a series never leaps over the horizon.
PERIODS_IN_HORIZON = {
    "DAILY": _HORIZON_DAYS,
    "WEEKLY": _HORIZON_DAYS // 7,
    "MONTHLY": 12 * HORIZON_YEARS,
    "YEARLY": HORIZON_YEARS,
}
MAX_COUNT = 500
MAX_LIST_ITEMS = 31  # values in one BY* list: a month of days
MAX_TIMES_PER_DAY = 24  # BYHOUR values x BYMINUTE values
# Parts refused outright, with the reason users see.
_REFUSED_PARTS = {"BYSECOND": "tasks recur at whole minutes"}

# The integer ranges RFC 5545 allows. dateutil accepts e.g. BYMONTHDAY=40 silently and then
# never produces an occurrence; users deserve to hear about the typo instead.
_INTEGER_LIST_RANGES = {
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
    "BYHOUR": (0, 23, False),
    "BYMINUTE": (0, 59, False),
}  # name -> (smallest magnitude, largest magnitude, negative values allowed)
_OTHER_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST")
_SUPPORTED_PARTS = (*_OTHER_PARTS, *_INTEGER_LIST_RANGES)

# Parts allowed only with some frequencies: RFC 5545's table (dateutil does not check it), and
# BYSETPOS only where it selects among several days ("last weekday of the month"). Besides being
# meaningless, e.g. FREQ=DAILY;BYYEARDAY=1;BYMONTH=2 or FREQ=DAILY;BYSETPOS=2 never occur, and
# dateutil would search such a daily rule day by day up to year 9999 (seconds of CPU) to say so.
# (BYDAY's ordinals, "2MO", are only for MONTHLY and YEARLY too, see _check_byday.)
_FREQUENCIES_OF_PART = {
    "BYWEEKNO": ("YEARLY",),
    "BYYEARDAY": ("YEARLY",),
    "BYMONTHDAY": ("DAILY", "MONTHLY", "YEARLY"),
    "BYSETPOS": ("MONTHLY", "YEARLY"),
}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The day filters of the frequencies that dateutil steps through day by day or week by week:
# with INTERVAL above 1 their phase can miss the matching days for ever.
_PHASED_DAY_FILTERS = {"DAILY": ("BYMONTH", "BYMONTHDAY", "BYDAY"), "WEEKLY": ("BYMONTH",)}
_WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# An INTERVAL large enough that dateutil's second period lies past year 9999, so that it
# expands exactly one period and stops.
_ONE_PERIOD = 1_000_000
# Jumps land at least this long before the moment of interest: a wall time and its UTC
# instant differ by less, so no occurrence after that moment is jumped over.
_JUMP_MARGIN = timedelta(days=2)

_EXAMPLE = "for example FREQ=WEEKLY;BYDAY=MO or FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=12"


@dataclass(frozen=True)
class RecurrenceRule:
    """A validated rule. COUNT and UNTIL are kept apart from the pattern because the series
    applies them itself: COUNT includes the series start, UNTIL is compared in UTC."""

    text: str
    parts: tuple[tuple[str, str], ...]  # the rule without COUNT and UNTIL, upper-cased names, in order
    count: int | None
    until: datetime | None  # naive: a UTC time if until_is_utc, else a local wall time
    until_is_utc: bool

    @property
    def frequency(self) -> str:
        return dict(self.parts)["FREQ"].upper()

    @property
    def interval(self) -> int:
        return int(dict(self.parts).get("INTERVAL", 1))

    @property
    def pattern(self) -> str:
        """The rule without COUNT and UNTIL, for dateutil."""
        return ";".join(f"{name}={value}" for name, value in self.parts)

    def until_utc(self, zone: ZoneInfo) -> datetime | None:
        if self.until is None:
            return None
        if self.until_is_utc:
            return self.until.replace(tzinfo=UTC)
        return local_to_utc(self.until, zone)

    def occurrences(self, start: datetime, *, after: datetime | None = None) -> Iterator[datetime]:
        """The rule's occurrences from the naive local wall time ``start`` on, lazily and in order,
        as naive local wall times (``start`` itself when it matches the rule).

        With ``after`` (a local wall time) the expansion is for finding the first occurrence after
        it: without COUNT it begins at the last whole period, counted in INTERVALs from ``start``'s,
        that lies safely before ``after``, so the work does not grow with the series' age. MONTHLY
        and YEARLY rules end after HORIZON_YEARS of periods without an occurrence.
        """
        first_period = self._period_start(start)
        skipped = 0  # whole periods before the one of ``after``, a multiple of INTERVAL
        floor = start  # no occurrence before this one is needed
        if after is not None:
            before_after = max(after, datetime.min + _JUMP_MARGIN) - _JUMP_MARGIN  # (no year 0)
            periods = self._periods_between(first_period, before_after)
            skipped = max(0, periods // self.interval) * self.interval
            floor = max(start, before_after)
        if self.frequency not in ("MONTHLY", "YEARLY"):  # stepped day by day, bounded at validation
            if skipped == 0 or self.count is not None:
                yield from rrulestr(self.pattern, dtstart=start)
            else:
                yield from rrulestr(self._pattern_from(start), dtstart=self._step(first_period, skipped))
            return
        if after is not None and self.count is not None:
            # COUNT counts from the start: dateutil's own expansion, cheap per occurrence and bounded
            # by COUNT, but only up to an occurrence found after ``after``: UNTIL then ends it.
            bound = next((local for local in self._by_period(start, skipped, floor) if local > after), None)
            if bound is not None:
                yield from rrulestr(self.pattern, dtstart=start).replace(until=bound)
            return
        yield from self._by_period(start, skipped, floor)

    def _by_period(self, start: datetime, skipped: int, floor: datetime) -> Iterator[datetime]:
        """MONTHLY and YEARLY occurrences from ``floor`` on, period by period from ``skipped``
        periods after the first, ending after HORIZON_YEARS of periods without an occurrence.

        Each period is expanded from ``floor`` at the earliest: with the parts taken from the
        start made explicit, only BYSETPOS looks at the whole period, and dateutil selects its
        positions among the whole period before it drops what precedes DTSTART."""
        one_period = rrulestr(self._pattern_from(start, interval=_ONE_PERIOD), dtstart=start)
        first_period = self._period_start(start)
        periods_without = 0
        while periods_without < PERIODS_IN_HORIZON[self.frequency]:
            try:
                period, period_end = self._step(first_period, skipped), self._step(first_period, skipped + 1)
            except (OverflowError, ValueError):  # past year 9999
                return
            periods_without += self.interval
            if floor < period_end:  # (the floor may lie in a later period, between two of the rule's)
                for local in one_period.replace(dtstart=max(period, floor)):
                    periods_without = 0
                    yield local
            skipped += self.interval

    def _pattern_from(self, start: datetime, *, interval: int | None = None) -> str:
        """The pattern with the parts dateutil would take from ``start`` made explicit (RFC 5545:
        the start's weekday, day, month and time), so that the same occurrences follow from
        another DTSTART: the start of a later period."""
        parts = dict(self.parts)
        if interval is not None:
            parts["INTERVAL"] = str(interval)
        if not parts.keys() & {"BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY"}:
            if self.frequency == "YEARLY":
                parts.setdefault("BYMONTH", str(start.month))
                parts["BYMONTHDAY"] = str(start.day)
            elif self.frequency == "MONTHLY":
                parts["BYMONTHDAY"] = str(start.day)
            elif self.frequency == "WEEKLY":
                parts["BYDAY"] = _WEEKDAY_CODES[start.weekday()]
        parts.setdefault("BYHOUR", str(start.hour))
        parts.setdefault("BYMINUTE", str(start.minute))
        parts["BYSECOND"] = str(start.second)
        return ";".join(f"{name}={value}" for name, value in parts.items())

    def _period_start(self, moment: datetime) -> datetime:
        """Midnight at the start of the day, week (from WKST), month or year of ``moment``."""
        day = moment.date()
        if self.frequency == "WEEKLY":
            week_start = _WEEKDAY_CODES.index(dict(self.parts).get("WKST", "MO").upper())
            day -= timedelta(days=(day.weekday() - week_start) % 7)
        elif self.frequency == "MONTHLY":
            day = day.replace(day=1)
        elif self.frequency == "YEARLY":
            day = date(day.year, 1, 1)
        return datetime.combine(day, time())

    def _periods_between(self, period: datetime, moment: datetime) -> int:
        """Whole periods from the period that starts at ``period`` to the one of ``moment``."""
        if self.frequency == "DAILY":
            return (moment.date() - period.date()).days
        if self.frequency == "WEEKLY":
            return (moment.date() - period.date()).days // 7
        months = (moment.year - period.year) * 12 + moment.month - period.month
        return months if self.frequency == "MONTHLY" else months // 12

    def _step(self, period: datetime, periods: int) -> datetime:
        step = {
            "DAILY": timedelta(days=periods),
            "WEEKLY": timedelta(weeks=periods),
            "MONTHLY": relativedelta(months=periods),
            "YEARLY": relativedelta(years=periods),
        }[self.frequency]
        return period + step


def parse_rule(rule_text: str) -> RecurrenceRule:
    """Validate an RRULE body (``FREQ=...;...``, no DTSTART, one line) and return it parsed.

    Raises InvalidRecurrenceRule with a message that names the problem, for a 400 response.
    """
    if not isinstance(rule_text, str) or not rule_text.strip():
        raise InvalidRecurrenceRule(f"The recurrence rule is empty; give an RRULE body, {_EXAMPLE}.")
    return _parse_rule_text(rule_text)


# A rule is parsed where a task is validated and again where its next occurrence is computed, and a
# few rules (FREQ=DAILY...) serve most tasks: a batch of completions parses each rule once. The
# parsed rule is immutable; a refused one raises every time (exceptions are not cached).
@lru_cache(maxsize=1024)
def _parse_rule_text(rule_text: str) -> RecurrenceRule:
    text = rule_text.strip()
    if "\n" in text or "\r" in text:
        raise InvalidRecurrenceRule(
            "The recurrence rule must be a single RRULE line; DTSTART, RDATE and EXDATE are not accepted "
            "(the series starts at the task's due date)."
        )
    if text.upper().startswith(("RRULE:", "DTSTART")):
        raise InvalidRecurrenceRule(
            f"Give only the RRULE body without 'RRULE:' or DTSTART (the series starts at the task's due date), "
            f"{_EXAMPLE}."
        )
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, separator, value = part.partition("=")
        name, value = name.strip().upper(), value.strip()
        if not separator or not name or not value:
            raise InvalidRecurrenceRule(f"'{part}' in the recurrence rule is not of the form NAME=VALUE; {_EXAMPLE}.")
        if name == "DTSTART":
            raise InvalidRecurrenceRule(
                "DTSTART is not accepted in the recurrence rule: the series starts at the task's due date."
            )
        if name in _REFUSED_PARTS:
            raise InvalidRecurrenceRule(f"{name} is not accepted in the recurrence rule: {_REFUSED_PARTS[name]}.")
        if name not in _SUPPORTED_PARTS:
            raise InvalidRecurrenceRule(
                f"The recurrence rule part {name} is not supported; use {', '.join(_SUPPORTED_PARTS)}."
            )
        if name in parts:
            raise InvalidRecurrenceRule(f"{name} appears more than once in the recurrence rule.")
        parts[name] = value

    frequency = parts.get("FREQ", "").upper()
    if frequency not in SUPPORTED_FREQUENCIES:
        raise InvalidRecurrenceRule(
            f"The recurrence rule needs FREQ set to one of {', '.join(SUPPORTED_FREQUENCIES)}; {_EXAMPLE}."
        )
    _positive_integer(parts, "INTERVAL", PERIODS_IN_HORIZON[frequency])
    count = _positive_integer(parts, "COUNT", MAX_COUNT)
    if count is not None and "UNTIL" in parts:
        raise InvalidRecurrenceRule("A recurrence rule may end with COUNT or with UNTIL, not both.")
    until, until_is_utc = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else (None, False)
    for name, value in parts.items():
        if name.startswith("BY") and len(value.split(",")) > MAX_LIST_ITEMS:
            raise InvalidRecurrenceRule(f"{name} in the recurrence rule may list at most {MAX_LIST_ITEMS} values.")
    for name, (low, high, negative_allowed) in _INTEGER_LIST_RANGES.items():
        if name in parts:
            _check_integer_list(name, parts[name], low, high, negative_allowed)
    for name, frequencies in _FREQUENCIES_OF_PART.items():
        if name in parts and frequency not in frequencies:
            raise InvalidRecurrenceRule(f"{name} cannot be used with FREQ={frequency} (RFC 5545).")
    if "BYDAY" in parts and frequency in _PHASED_DAY_FILTERS:
        _check_plain_weekdays(parts["BYDAY"], frequency)
    if "BYMONTH" in parts and "BYMONTHDAY" in parts:
        _check_month_has_day(parts["BYMONTH"], parts["BYMONTHDAY"])
    _check_bounded(parts, frequency)

    pattern_parts = tuple((name, value) for name, value in parts.items() if name not in ("COUNT", "UNTIL"))
    rule = RecurrenceRule(text, pattern_parts, count, until, until_is_utc)
    reference = datetime(2000, 1, 1)  # a leap year's first day: a neutral DTSTART for the checks below
    try:
        first = next(rule.occurrences(reference), None)
    except (ValueError, TypeError) as error:  # dateutil's own checks, e.g. BYDAY=XX
        raise InvalidRecurrenceRule(f"The recurrence rule is invalid: {error}; {_EXAMPLE}.") from None
    if first is None:
        raise InvalidRecurrenceRule(
            f"The recurrence rule never produces an occurrence within {HORIZON_YEARS} years "
            "(e.g. the 30th of February, or a BYSETPOS beyond the days it selects from)."
        )
    return rule


def rule_text(frequency: str, *, interval: int = 1, weekdays=(), month_day: int | None = None) -> str:
    """The RRULE body of a simple rule, validated: ``rule_text("WEEKLY", interval=2, weekdays=[1])``
    is ``FREQ=WEEKLY;INTERVAL=2;BYDAY=TU``. ``weekdays`` are numbers (Monday 0), ``month_day`` may be
    negative (-1: the last day). Raises InvalidRecurrenceRule, like parse_rule, e.g. for an INTERVAL
    beyond the horizon or the 40th of the month."""
    parts = [f"FREQ={frequency}"]
    if interval != 1:
        parts.append(f"INTERVAL={interval}")
    if weekdays:
        parts.append("BYDAY=" + ",".join(_WEEKDAY_CODES[day] for day in sorted(set(weekdays))))
    if month_day is not None:
        parts.append(f"BYMONTHDAY={month_day}")
    text = ";".join(parts)
    parse_rule(text)
    return text


def next_occurrence(
    rule_text: str, *, series_start: datetime, due: datetime, tz_name: str, now: datetime
) -> datetime | None:
    """The due date of the occurrence that follows the completed task's, or None when the series ended.

    - ``series_start``: the due date of the series' first task (equal to ``due`` for the first
      task); the rule is expanded from its local wall time and COUNT counts from it.
    - ``due``: the completed task's due date; ``now``: the completion time (late completion
      skips to the first occurrence after it, see the module docstring).
    - ``tz_name``: the owner's IANA time zone; an unknown name raises ZoneInfoNotFoundError.

    All datetimes are aware; the result is an aware UTC datetime. Raises InvalidRecurrenceRule
    for a rule that parse_rule refuses. A rule that does not occur again within HORIZON_YEARS
    from this series start (a leap day with INTERVAL=2 from an odd year) ends the series.
    """
    rule = parse_rule(rule_text)
    zone = ZoneInfo(tz_name)
    after = max(due, now)
    until = rule.until_utc(zone)
    for number, occurrence in enumerate(_series(rule, series_start, zone, after=after), start=1):
        if rule.count is not None and number > rule.count:
            return None
        if until is not None and occurrence > until:
            return None
        if occurrence > after:
            return occurrence
    return None


def carry_over_remind_at(*, old_due: datetime, old_remind_at: datetime | None, new_due: datetime) -> datetime | None:
    """The next occurrence's reminder keeps the completed task's distance from its due date
    ("one hour before"), measured in real time, so it is the same across DST changes."""
    if old_remind_at is None:
        return None
    return new_due - (old_due - old_remind_at)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time as an aware UTC instant: a time in a spring-forward gap is
    shifted forward by the gap, an ambiguous fall-back time takes its first (daylight) instant.
    ``fold=0`` gives exactly that in zoneinfo: both use the offset in force before the change."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def same_wall_time(moment: datetime, *, old_tz: str, new_tz: str) -> datetime:
    """The instant that shows on the ``new_tz`` clock the wall time ``moment`` showed on ``old_tz``'s:
    where a series re-anchors when its owner changes time zone (09:00 Paris -> 09:00 New York).
    A wall time the new zone skips or repeats is placed like any other (``local_to_utc``)."""
    return local_to_utc(_local(moment, ZoneInfo(old_tz)), ZoneInfo(new_tz))


def first_occurrence_after(rule_text: str, *, start: datetime, after: datetime, tz_name: str) -> datetime | None:
    """The first occurrence strictly after ``after`` of the rule expanded from ``start``'s local
    wall time (which counts only when it matches the rule): where a series that has no due date
    yet first falls. Aware datetimes in, an aware UTC datetime (or None) out."""
    rule = parse_rule(rule_text)
    zone = ZoneInfo(tz_name)
    after_local = _local(after, zone)
    for local in rule.occurrences(_local(start, zone), after=after_local):
        if local_to_utc(local, zone) > after:
            return local_to_utc(local, zone)
    return None


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _series(rule: RecurrenceRule, series_start: datetime, zone: ZoneInfo, *, after: datetime) -> Iterator[datetime]:
    """The series' occurrences as UTC instants, in order: the series start (always the first
    occurrence, RFC 5545), then the rule's occurrences after its local wall time; those long
    before ``after`` are jumped over unless COUNT needs them counted."""
    start_local = _local(series_start, zone)
    yield series_start.astimezone(UTC)
    for local in rule.occurrences(start_local, after=_local(after, zone)):
        if local > start_local:  # dateutil yields the start itself when it matches the rule
            yield local_to_utc(local, zone)


def _positive_integer(parts: dict[str, str], name: str, largest: int) -> int | None:
    if name not in parts:
        return None
    value = parts[name]
    if not value.isdigit() or not 1 <= int(value) <= largest:
        raise InvalidRecurrenceRule(
            f"{name} in the recurrence rule must be a whole number from 1 to {largest}, not '{value[:20]}'."
        )
    return int(value)


def _check_plain_weekdays(byday: str, frequency: str) -> None:
    for item in byday.split(","):
        if item.strip().upper() not in _WEEKDAY_CODES:
            raise InvalidRecurrenceRule(
                f"BYDAY with FREQ={frequency} lists plain weekdays (MO..SU), not '{item[:20]}': "
                "ordinals like 2MO are for MONTHLY and YEARLY rules (RFC 5545)."
            )


def _check_bounded(parts: dict[str, str], frequency: str) -> None:
    """Refuse what would make an expansion costly (see the module docstring, "Bounded work")."""
    times_per_day = len(parts.get("BYHOUR", "0").split(",")) * len(parts.get("BYMINUTE", "0").split(","))
    if times_per_day > MAX_TIMES_PER_DAY:
        raise InvalidRecurrenceRule(
            f"The recurrence rule gives {times_per_day} times of day (BYHOUR x BYMINUTE); at most {MAX_TIMES_PER_DAY}."
        )
    if "BYSETPOS" in parts and times_per_day > 1:
        raise InvalidRecurrenceRule("BYSETPOS selects among days: use it with one time of day (one BYHOUR, one BYMINUTE).")
    filters = [name for name in _PHASED_DAY_FILTERS.get(frequency, ()) if name in parts]
    if filters and int(parts.get("INTERVAL", "1")) > 1:
        raise InvalidRecurrenceRule(
            f"FREQ={frequency} with INTERVAL above 1 cannot also filter by {', '.join(filters)} (its phase could miss "
            "them for ever); say the same with FREQ=MONTHLY or FREQ=YEARLY."
        )
    if frequency == "DAILY" and len(filters) == 3:
        raise InvalidRecurrenceRule(
            "FREQ=DAILY with BYMONTH, BYMONTHDAY and BYDAY together can be decades apart; use FREQ=YEARLY with the same parts."
        )


def _parse_until(value: str) -> tuple[datetime, bool]:
    """UNTIL as a naive datetime and whether it is UTC. A date means up to the end of that local day."""
    for form, is_utc in (("%Y%m%dT%H%M%SZ", True), ("%Y%m%dT%H%M%S", False)):
        try:
            return datetime.strptime(value.upper(), form), is_utc
        except ValueError:
            pass
    try:
        return datetime.combine(datetime.strptime(value, "%Y%m%d").date(), time.max), False
    except ValueError:
        raise InvalidRecurrenceRule(
            f"UNTIL in the recurrence rule must look like 20261231, 20261231T090000 or 20261231T170000Z, not '{value}'."
        ) from None


def _check_integer_list(name: str, value: str, low: int, high: int, negative_allowed: bool) -> None:
    for item in value.split(","):
        item = item.strip()
        number = item[1:] if negative_allowed and item.startswith(("-", "+")) else item
        if not number.isdigit() or not low <= int(number) <= high:
            allowed = f"{low}..{high}" + (f" or -{high}..-{low}" if negative_allowed else "")
            raise InvalidRecurrenceRule(f"{name} in the recurrence rule must list numbers in {allowed}, not '{item}'.")


def _check_month_has_day(months: str, month_days: str) -> None:
    """Refuse the classic impossible date (30 February, 31 April) at once instead of searching."""
    longest = max(_DAYS_IN_MONTH[int(month) - 1] for month in months.split(","))
    if all(abs(int(day)) > longest for day in month_days.split(",")):
        raise InvalidRecurrenceRule(f"No month in BYMONTH={months} has a day BYMONTHDAY={month_days}.")
