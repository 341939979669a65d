"""Handlers of the tasks app's consumers: the realtime bridge (consumer ``realtime``).

The bridge reads task-updates (group websocket-service) and forwards every
``sync.task_changed`` event, unchanged, to the channel-layer group of the task's owner, from
which ``tasks.consumers.SyncConsumer`` hands it to each of the user's open sockets.

The runtime gives ``forward_task_changes`` the events it fetched together (and
``forward_task_change`` a single event when it re-runs one after a failure). Both send from ONE
asyncio loop that lives as long as the process: the channel layer keeps its Redis connections
per loop, so a batch costs a few Redis round trips rather than a new loop and new connections
(which is what ``async_to_sync`` per message would cost). Pushes need no idempotency of their
own: a redelivered event reaches clients again and they drop it, its version being no newer
than what they have.
"""

import asyncio
from collections import defaultdict

from channels.layers import get_channel_layer

from tasks.realtime import push_message, user_group_name

# Users whose events are sent at once: enough to overlap Redis round trips, few enough not to
# queue thousands of commands on the channel layer's connection pool.
CONCURRENT_USERS = 100

_loop = None


def _bridge_loop():
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def forward_task_changes(events):
    _bridge_loop().run_until_complete(send_to_owners(events))


def forward_task_change(event):
    forward_task_changes([event])


async def send_to_owners(events):
    """Send each event to its owner's group: one user's events in order, different users at once."""
    layer = get_channel_layer()
    by_user = defaultdict(list)
    for event in events:
        by_user[event["data"]["user_id"]].append(event)

    async def send_in_order(user_id, user_events):
        # Sequential per user, so a socket sees one task's versions in the order Kafka gave them.
        group = user_group_name(user_id)
        for event in user_events:
            await layer.group_send(group, push_message(event))

    users = list(by_user.items())
    for start in range(0, len(users), CONCURRENT_USERS):
        await asyncio.gather(*(send_in_order(user_id, user_events) for user_id, user_events in users[start:start + CONCURRENT_USERS]))
