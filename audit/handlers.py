"""The audit service's handlers: every task event, stored once, if our services wrote it.

Anyone who can write to task-events could write an audit entry of any task, user or content, so
before anything is stored ONE query (``tasks.sync.logged_versions``) looks up the batch's events in
the sync log. The services emit each task event in the same transaction as a sync event of the
same task at the same version (tasks/services.py), and the log holds that sync event by the time
the relay has published either. So a task event whose task version is not in the log, whose
change does not match its type (a task.deleted of a version that was an update), or whose fields
differ from the logged task (another owner, another title, ...) is a ForgedEvent. The whole batch
is checked before any of it is stored; the runtime then re-runs the batch's events one by one, so
the legitimate ones are recorded once and only the forged one is dead-lettered.

What the log cannot tell apart: a genuine event sent again under a new event_id is recorded
again (a true entry, twice), and a task.updated and a task.completed carrying the same completed
version are indistinguishable. Neither lands anything but the owner's own history. An event older
than the log's retention is dead-lettered as forged too, and its dead letter says so (tasks.sync
explains what to do with it; the task-events topic keeps only 7 days anyway).
"""

from django.utils import timezone

from audit.models import AuditEntry
from events.bulk import insert_rows
from events.core.handling import delivery_of
from events.schemas import ForgedEvent, event_uuid, parse_timestamp
from tasks.events import SYNC_CHANGE_OF, contradicted_fields
from tasks.sync import logged_versions, unvouched


def record_task_event(event):
    record_task_events([event])


def record_task_events(events):
    check_against_sync_log(events)
    store_entries(events)


def check_against_sync_log(events):
    """Raise ForgedEvent unless every task event is the one our services emitted with a logged change."""
    versions = [(event_uuid(event["data"]["task_id"], "task_id"), event["data"]["version"]) for event in events]
    logged = logged_versions(versions)
    for event, (task_id, version) in zip(events, versions):
        sync = logged.get((str(task_id), version))
        if sync is None:
            raise unvouched(f"{_named(event, task_id, version)}: the sync log has no such version", event)
        if sync["data"]["change_type"] != SYNC_CHANGE_OF[event["event_type"]]:
            raise ForgedEvent(f"{_named(event, task_id, version)}: that version was a change of type {sync['data']['change_type']!r}")
        differing = contradicted_fields(event["data"], sync["data"]["task"])
        if differing:
            raise ForgedEvent(f"{_named(event, task_id, version)} contradicts the sync log on {', '.join(differing)}")


def _named(event, task_id, version):
    """How a dead letter names the event (built only for one: formatting it for every event showed in the profile)."""
    return f"{event['event_type']} of task {task_id} version {version}"


def store_entries(events):
    """Store the events' entries in ONE statement, as plain rows (events.bulk.insert_rows: an
    AuditEntry instance per event cost the consumer more than the statement). The runtime already
    skips redelivered events; the unique event_id is the second line of defence (ON CONFLICT DO
    NOTHING), e.g. for a rebuild of the trail under another group."""
    # What auto_now_add would say: the whole batch is stored at once. Timestamps go in as ISO text,
    # so that json.dumps does not call back into Python for each (a share of the profile).
    recorded_at = timezone.now().isoformat()
    insert_rows(AuditEntry, [_entry(event, recorded_at) for event in events], ignore_conflicts=True)


def _entry(event, recorded_at):
    """The row (columns of AuditEntry) of ``event``."""
    data = event["data"]
    delivery = delivery_of(event)
    return {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "task_id": data["task_id"],
        "user_id": data["user_id"],
        "title": data["title"],
        "occurred_at": parse_timestamp(event["timestamp"]).isoformat(),
        "recorded_at": recorded_at,
        "data": data,
        "metadata": event["metadata"],
        "topic": delivery.topic,
        "partition": delivery.partition,
        "offset": delivery.offset,
    }
