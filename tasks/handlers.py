"""Handlers of the tasks app's consumers: the realtime bridge (consumer ``realtime``).

The bridge reads task-updates (group websocket-service) and forwards every
``sync.task_changed`` event, unchanged, to the channel-layer group of the task's owner, from
which ``tasks.consumers.SyncConsumer`` hands it to each of the user's open sockets.

It is a batch handler: the runtime calls it with the validated events of one poll and awaits
it on the runtime's one asyncio loop, so the channel layer's Redis connections live on that
loop and a batch costs a few round trips instead of one thread hop per message. It needs no
idempotency record: a redelivered event reaches clients again, and they drop it because its
version is not newer than what they have.
"""

import asyncio
from collections import defaultdict

from channels.layers import get_channel_layer

from tasks.realtime import push_message, user_group_name

# Users whose events are sent at once: enough to overlap Redis round trips, few enough not to
# queue thousands of commands on the channel layer's connection pool.
CONCURRENT_USERS = 100


async def forward_task_changes(events):
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
