"""The sync log: every ``sync.task_changed`` a user's tasks produced, for clients to catch up.

The WebSocket is lossy by design (channels-redis drops messages when a connection's buffer is
full; a client may be offline), so clients converge by asking ``GET /api/sync/?since=<cursor>``
for the changes after the last cursor they saw. ``record_change`` writes each sync event into
``TaskChange`` in the same transaction as the change (the services call it next to ``emit``),
so the log holds exactly the committed changes, deletions included.

Because it does, the log is also what the consumers check an event against: every version of
every task our services wrote is in it, with its owner, for as long as the log keeps it
(``logged_data`` for the realtime bridge, ``task_at_version`` for the recurring-task service,
``logged_versions`` for the audit trail, ``task_states``/``task_states_of`` for the reminder scheduler). An event the
log contradicts is a ForgedEvent, dead-lettered at once.

A consumer lagging beyond the retention below cannot have its oldest events vouched for: their
changes were purged, so they are dead-lettered as forged too, and ``unvouched`` says in the dead
letter that the event is older than the log keeps. (The topics keep 7 days, so a consumer that far
behind has lost messages anyway: it is an outage.) After inspection they can be replayed with
``replay_dlq`` once the log vouches for them again (the purged rows restored from a backup): a
replay is checked like any event, so a forged one stays forged.

The cursor is the ``TaskChange`` id. Ids are handed out at insert, not at commit, so two
concurrent transactions of one user could commit out of id order and a reader could move its
cursor past a row that commits a moment later. A per-user transaction-scoped advisory lock taken
before the insert makes one user's inserts commit in id order; other users are not slowed down.

Retention: the log keeps ``SYNC_LOG_RETENTION_DAYS``. ``purge_sync_log`` deletes older rows in
bounded batches and raises a watermark (``SyncLogPurge.purged_through``, the highest purged id)
in the transaction of each batch. A cursor below the watermark is stale: changes after it may be
gone, so ``changes_since`` raises ``StaleCursor`` (410 Gone) and the client reloads its list
instead of catching up with a hole in it. A cursor at or above the watermark is complete, however
old, because nothing above the watermark was ever purged; ``latest_cursor`` never hands out one
below it, so a user whose own changes were all purged does not get a stale cursor with the page.
"""

import json
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from events.bulk import bulk_insert
from events.retention import purge_in_batches
from events.schemas import ForgedEvent, event_uuid, parse_timestamp
from tasks.models import SyncLogPurge, TaskChange

MAX_CHANGES_PER_PAGE = 500


class StaleCursor(Exception):
    """The cursor is older than what the sync log keeps; ``latest`` is a cursor to start again from."""

    def __init__(self, latest):
        super().__init__(f"the sync log no longer reaches back to this cursor; reload, then continue from {latest}")
        self.latest = latest


def record_change(event):
    """Log a ``sync.task_changed`` event; call inside the transaction of the change."""
    return record_changes([event])[0]


def record_changes(events):
    """Log ``sync.task_changed`` events, in their order, inside the transaction of their changes.

    One statement, one round trip: it takes every user's advisory lock (in user id order, so that
    two writers never wait on each other crosswise) before the first row is inserted, so each
    row's id (the column default) is drawn with its user's lock held, and ids of one user are
    in commit order (what the cursors of GET /api/sync/ rely on)."""
    if not events:
        return []
    user_ids = sorted({int(event["data"]["user_id"]) for event in events})
    return bulk_insert(
        [TaskChange(user_id=int(event["data"]["user_id"]), task_id=event["data"]["task_id"], event=event) for event in events],
        first=(
            "SELECT pg_advisory_xact_lock(hashtextextended('task-sync:' || user_id::text, 0)) "
            "FROM unnest(%s::bigint[]) AS user_id ORDER BY user_id",
            ["{" + ",".join(map(str, user_ids)) + "}"],
        ),
    )


def purged_through():
    """The sync-log watermark: the highest id purged so far (0 before the first purge)."""
    return SyncLogPurge.objects.values_list("purged_through", flat=True).first() or 0


def latest_cursor(user):
    """The cursor after every change of ``user`` so far, never below the purge watermark."""
    last = TaskChange.objects.filter(user=user).order_by("-id").values_list("id", flat=True).first()
    return str(max(last or 0, purged_through()))


def changes_since(user, cursor=None, *, limit=None):
    """The user's sync events after ``cursor`` (all when None), oldest first, at most ``limit``.

    Returns ``(events, next_cursor, has_more)``; ``next_cursor`` is the cursor to ask with next
    (``cursor`` itself when nothing changed). Raises ``StaleCursor`` for a cursor below the purge
    watermark. The watermark is read after the rows: a purge that commits between the two reads
    has raised it by then, so a page it made incomplete is never returned.
    """
    limit = limit or MAX_CHANGES_PER_PAGE
    rows = TaskChange.objects.filter(user=user).order_by("id")
    if cursor is not None:
        rows = rows.filter(id__gt=cursor)
    page = list(rows.values_list("id", "event")[: limit + 1])
    if cursor is not None and int(cursor) < purged_through():
        raise StaleCursor(latest_cursor(user))
    has_more = len(page) > limit
    page = page[:limit]
    next_cursor = str(page[-1][0]) if page else str(cursor or 0)
    return [event for _, event in page], next_cursor, has_more


def logged_data(event_ids):
    """The ``data`` of the logged sync events among ``event_ids`` (canonical UUID text), as
    ``{event_id: data}``: one query on the event-id index, its ids in one array parameter (the
    ORM's IN list of a key transform cost the realtime bridge a fifth of its CPU to build). Only
    ``data``, what the bridge compares: decoding whole events cost it a third more."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT event ->> 'event_id', event -> 'data' FROM {connection.ops.quote_name(TaskChange._meta.db_table)} "
            "WHERE (event ->> 'event_id') = ANY(%s::text[])",
            ["{" + ",".join(str(event_id) for event_id in event_ids) + "}"],
        )
        return {event_id: json.loads(data) for event_id, data in cursor.fetchall()}


def logged_versions(task_versions):
    """The logged sync events of the given ``(task_id, version)`` pairs, as ``{(task_id, version): event}``
    (task ids as lowercase strings): ONE query on the task_id index, however many pairs.

    Found after the task changed again or was deleted, as long as the log keeps that change. A
    task id that is no UUID raises InvalidEvent. Plain SQL with one array parameter per column:
    the ORM's IN lists cost the consumers more to build and quote than the query takes to run.
    """
    pairs = {(_canonical_uuid(task_id), version) for task_id, version in task_versions}
    if not pairs:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT task_id, event FROM {connection.ops.quote_name(TaskChange._meta.db_table)} "
            "WHERE task_id = ANY(%s::uuid[]) AND (event #>> '{data,task,version}')::numeric = ANY(%s::numeric[])",
            ["{" + ",".join({task_id for task_id, _ in pairs}) + "}",
             "{" + ",".join({str(version) for _, version in pairs if isinstance(version, int | float)}) + "}"],
        )
        logged = [(str(task_id), json.loads(event)) for task_id, event in cursor.fetchall()]
    found = ((task_id, event["data"]["task"]["version"], event) for task_id, event in logged)
    return {(task_id, version): event for task_id, version, event in found if (task_id, version) in pairs}


def _canonical_uuid(value):
    return str(value) if isinstance(value, uuid.UUID) else str(event_uuid(value, "task_id"))


def task_at_version(task_id, version):
    """The task object (CONTRACT.md section 2) of task ``task_id`` as version ``version`` left it, or None."""
    event = logged_versions([(task_id, version)]).get((str(task_id), version))
    return event["data"]["task"] if event else None


def task_states(task_id, fields):
    """Every state of task ``task_id`` that the log holds, oldest first, as ``(change_type, {field: value})``
    with only the named ``fields`` of its task object (not the whole of it: descriptions are long).
    One query on the task_id index."""
    return task_states_of([task_id], fields).get(task_id, [])


def task_states_of(task_ids, fields):
    """``task_states`` of many tasks in one query: ``{task_id: [(change_type, {field: value}), ...]}``,
    a task the log has no state of left out."""
    rows = (
        TaskChange.objects.filter(task_id__in=list(task_ids))
        .order_by("id")
        .values_list("task_id", "event__data__change_type", *(f"event__data__task__{name}" for name in fields))
    )
    states = {}
    for task_id, change_type, *values in rows:
        states.setdefault(task_id, []).append((change_type, dict(zip(fields, values))))
    return states


def unvouched(message, event):
    """The ForgedEvent for ``event``, which the log has no record of: ``message`` says what is missing,
    and the dead letter also says when the event is older than the log keeps (see the module's
    docstring: then it may be a real event of a consumer that lagged beyond the retention)."""
    retention = timedelta(days=settings.SYNC_LOG_RETENTION_DAYS)
    try:
        older = parse_timestamp(event["timestamp"]) < timezone.now() - retention
    except (ValueError, TypeError):
        older = False
    if older:
        message += (
            f" (the event is older than the {settings.SYNC_LOG_RETENTION_DAYS} days the sync log keeps: "
            "if it is genuine, its consumer lagged beyond the retention)"
        )
    return ForgedEvent(message)


def purge_sync_log(older_than=None):
    """Delete the changes older than ``SYNC_LOG_RETENTION_DAYS`` in bounded batches; return how many."""
    older_than = older_than or timedelta(days=settings.SYNC_LOG_RETENTION_DAYS)

    def raise_watermark(ids):
        # GREATEST: a concurrent purge that got less far never lowers it.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SyncLogPurge._meta.db_table} (id, purged_through) VALUES (1, %s) "
                f"ON CONFLICT (id) DO UPDATE SET purged_through = "
                f"GREATEST({SyncLogPurge._meta.db_table}.purged_through, EXCLUDED.purged_through)",
                [max(ids)],
            )

    return purge_in_batches(
        TaskChange.objects.filter(created_at__lt=timezone.now() - older_than), before_delete=raise_watermark
    )
