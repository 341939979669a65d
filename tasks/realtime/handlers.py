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

import asyncio
from collections import defaultdict

from channels.layers import get_channel_layer

from events.schemas import ForgedEvent
from tasks.realtime.groups import group_send_many, push_batch_message, user_group_name
from tasks.sync import logged_data

_loop = None


def _bridge_loop():
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def forward_task_changes(events):
    check_against_sync_log(events)
    _bridge_loop().run_until_complete(send_to_owners(events))


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


async def send_to_owners(events):
    """Send each owner's events to the owner's group as ONE channel-layer message, all owners' in one
    ``group_send_many``."""
    by_user = defaultdict(list)
    for event in events:
        by_user[event["data"]["user_id"]].append(event)  # in Kafka's order: the socket sends them in it
    await group_send_many(
        get_channel_layer(), [(user_group_name(user_id), push_batch_message(user_events)) for user_id, user_events in by_user.items()]
    )
