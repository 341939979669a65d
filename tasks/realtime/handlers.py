"""The realtime bridge (consumer ``realtime``): task changes to their owners' open sockets.

The bridge reads task-updates (group websocket-service) and forwards every
``sync.task_changed`` event, unchanged, to the channel-layer group of the task's owner, from
which ``tasks.realtime.consumers.SyncConsumer`` hands it to each of the user's open sockets.

The runtime gives ``forward_task_changes`` the events it fetched together (and
``forward_task_change`` a single event when it re-runs one after a failure). Both send from ONE
asyncio loop that lives as long as the process: the channel layer keeps its Redis connections
per loop, so a batch costs a few Redis round trips rather than a new loop and new connections
(which is what ``async_to_sync`` per message would cost). A user's events of a batch travel as
one channel-layer message (``push_batch_message``), which the socket sends on one by one, and
the messages of all users go out together (``group_send_many``): two Redis round trips per
batch, whatever the number of users. Pushes need no idempotency of their
own: a redelivered event reaches clients again and they drop it, its version being no newer
than what they have.

Nothing reaches a socket that the sync log does not vouch for. Anyone who can write to
task-updates could name any user, so before anything is sent, ONE query (``logged_data``)
looks up the batch's events in the sync log, which the services write in the same transaction
as the change and its outbox row: a real event is always there, with its owner, by the time the
relay has published it. An event that is not, or whose data differs from the logged one (another
owner, another task, altered content), raises ForgedEvent. The runtime then re-runs the batch's
events one by one, so the legitimate ones still go out and only the forged one is dead-lettered;
checking the whole batch before sending any of it means none is pushed twice.
"""

from collections import defaultdict

from events.schemas import ForgedEvent
from tasks.realtime.groups import push_to_users
from tasks.sync import logged_data


def forward_task_changes(events):
    """Each owner's events, in Kafka's order, as ONE channel-layer message (the socket sends them
    on in it), every owner's of the batch in one ``push_to_users``."""
    check_against_sync_log(events)
    by_user = defaultdict(list)
    for event in events:
        by_user[event["data"]["user_id"]].append(event)
    push_to_users(by_user)


def forward_task_change(event):
    forward_task_changes([event])


def check_against_sync_log(events):
    """Raise ForgedEvent unless every event is in the sync log exactly as it arrived."""
    logged = logged_data(event["event_id"] for event in events)
    for event in events:
        recorded = logged.get(event["event_id"])
        if recorded is None:
            raise ForgedEvent(f"sync.task_changed {event['event_id']} is not in the sync log")
        if recorded != event["data"]:
            raise ForgedEvent(f"sync.task_changed {event['event_id']} differs from the sync log's record")

