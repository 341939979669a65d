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

from channels.layers import get_channel_layer

from tasks.realtime import push_message, user_group_name

# group_send calls in flight at once: enough to overlap Redis round trips, few enough not to
# queue thousands of commands on the connection pool at once.
CONCURRENT_SENDS = 100


async def forward_task_changes(events):
    layer = get_channel_layer()
    for start in range(0, len(events), CONCURRENT_SENDS):
        chunk = events[start:start + CONCURRENT_SENDS]
        await asyncio.gather(
            *(layer.group_send(user_group_name(event["data"]["user_id"]), push_message(event)) for event in chunk)
        )
