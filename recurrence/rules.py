"""Recurrence rules of recurring tasks: validation and next-occurrence arithmetic (pure, no I/O).

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
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr


class InvalidRecurrenceRule(ValueError):
    """The text is not a recurrence rule this service can expand; the message is fit for users."""


SUPPORTED_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")

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
    "BYSECOND": (0, 60, False),
}  # name -> (smallest magnitude, largest magnitude, negative values allowed)
_OTHER_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST")
_SUPPORTED_PARTS = (*_OTHER_PARTS, *_INTEGER_LIST_RANGES)

# Parts allowed only with some frequencies: RFC 5545's table (dateutil does not check it), and
# BYSETPOS only where it selects among several days ("last weekday of the month"). Besides being
# meaningless, e.g. FREQ=DAILY;BYYEARDAY=1;BYMONTH=2 or FREQ=DAILY;BYSETPOS=2 never occur, and
# dateutil would search such a daily rule day by day up to year 9999 (seconds of CPU) to say so.
_FREQUENCIES_OF_PART = {
    "BYWEEKNO": ("YEARLY",),
    "BYYEARDAY": ("YEARLY",),
    "BYMONTHDAY": ("DAILY", "MONTHLY", "YEARLY"),
    "BYSETPOS": ("MONTHLY", "YEARLY"),
}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_EXAMPLE = "for example FREQ=WEEKLY;BYDAY=MO or FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=12"


@dataclass(frozen=True)
class RecurrenceRule:
    """A validated rule. COUNT and UNTIL are kept apart from the pattern because the series
    applies them itself: COUNT includes the series start, UNTIL is compared in UTC."""

    text: str
    pattern: str  # the rule without COUNT and UNTIL, for dateutil
    count: int | None
    until: datetime | None  # naive: a UTC time if until_is_utc, else a local wall time
    until_is_utc: bool

    def until_utc(self, zone: ZoneInfo) -> datetime | None:
        if self.until is None:
            return None
        if self.until_is_utc:
            return self.until.replace(tzinfo=UTC)
        return local_to_utc(self.until, zone)

    def expand(self, dtstart: datetime) -> rrule:
        """The rule's occurrences from ``dtstart`` on, as naive local wall times (lazily)."""
        return rrulestr(self.pattern, dtstart=dtstart)


def parse_rule(rule_text: str) -> RecurrenceRule:
    """Validate an RRULE body (``FREQ=...;...``, no DTSTART, one line) and return it parsed.

    Raises InvalidRecurrenceRule with a message that names the problem, for a 400 response.
    """
    if not isinstance(rule_text, str) or not rule_text.strip():
        raise InvalidRecurrenceRule(f"The recurrence rule is empty; give an RRULE body, {_EXAMPLE}.")
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
    _positive_integer(parts, "INTERVAL")
    count = _positive_integer(parts, "COUNT")
    if count is not None and "UNTIL" in parts:
        raise InvalidRecurrenceRule("A recurrence rule may end with COUNT or with UNTIL, not both.")
    until, until_is_utc = _parse_until(parts["UNTIL"]) if "UNTIL" in parts else (None, False)
    for name, (low, high, negative_allowed) in _INTEGER_LIST_RANGES.items():
        if name in parts:
            _check_integer_list(name, parts[name], low, high, negative_allowed)
    for name, frequencies in _FREQUENCIES_OF_PART.items():
        if name in parts and frequency not in frequencies:
            raise InvalidRecurrenceRule(f"{name} cannot be used with FREQ={frequency} (RFC 5545).")
    if "BYMONTH" in parts and "BYMONTHDAY" in parts:
        _check_month_has_day(parts["BYMONTH"], parts["BYMONTHDAY"])

    pattern = ";".join(f"{name}={value}" for name, value in parts.items() if name not in ("COUNT", "UNTIL"))
    rule = RecurrenceRule(text, pattern, count, until, until_is_utc)
    reference = datetime(2000, 1, 1)  # a leap year's first day: a neutral DTSTART for the checks below
    try:
        first = next(iter(rule.expand(reference)), None)
    except (ValueError, TypeError) as error:  # dateutil's own checks, e.g. BYDAY=XX
        raise InvalidRecurrenceRule(f"The recurrence rule is invalid: {error}; {_EXAMPLE}.") from None
    if first is None:
        raise InvalidRecurrenceRule("The recurrence rule never produces an occurrence (e.g. the 30th of February).")
    return rule


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
    for a rule that parse_rule refuses. A rule that can never occur again from this series start
    (a leap day with INTERVAL=2 from an odd year) ends the series, after dateutil searched up to
    year 9999.
    """
    rule = parse_rule(rule_text)
    zone = ZoneInfo(tz_name)
    after = max(due, now)
    until = rule.until_utc(zone)
    for number, occurrence in enumerate(_series(rule, series_start, zone), start=1):
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


def _series(rule: RecurrenceRule, series_start: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    """The series' occurrences as UTC instants, in order: the series start (always the first
    occurrence, RFC 5545), then the rule's occurrences after its local wall time."""
    start_local = series_start.astimezone(zone).replace(tzinfo=None)
    yield series_start.astimezone(UTC)
    for local in rule.expand(start_local):
        if local > start_local:  # dateutil yields the start itself when it matches the rule
            yield local_to_utc(local, zone)


def _positive_integer(parts: dict[str, str], name: str) -> int | None:
    if name not in parts:
        return None
    value = parts[name]
    if not value.isdigit() or int(value) < 1:
        raise InvalidRecurrenceRule(
            f"{name} in the recurrence rule must be a whole number of at least 1, not '{value}'."
        )
    return int(value)


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
