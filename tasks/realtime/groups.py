"""Pushing messages to a user's open WebSocket connections through the channel layer.

Every connection of a user joins one channel-layer group; anything sent to the group reaches
all of that user's clients and nobody else's. A connection also remembers the credential that
opened it (``credential_of``: a token's digest or a session's hash), so that revoking that
credential closes exactly the sockets it opened (``close_sockets``, tasks/accounts/tokens.py).
"""

import asyncio
import hashlib
import logging
import time
from collections import defaultdict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# Where the handshake's authentication (tasks.accounts.auth) leaves the digest of the token that
# authenticated it; a session's socket has none.
TOKEN_DIGEST_SCOPE_KEY = "api_token_digest"


def user_group_name(user_id):
    return f"user.{user_id}"


def push_message(message):
    """The channel-layer message that ``SyncConsumer.push`` sends to the browser as ``message``."""
    return {"type": "push", "message": message}


def push_batch_message(messages):
    """The channel-layer message that ``SyncConsumer.push_batch`` sends to the browser as one JSON
    message per item of ``messages``, in their order: a batch costs one group send, not one per item."""
    return {"type": "push.batch", "messages": messages}


# Stores ARGV[i] in the channel key KEYS[i] (a key may come again) unless the channel holds its
# capacity ARGV[n + i] already: what channels_redis's group_send does per message, for many at once.
_STORE_LUA = """
local n = #KEYS
local now, expiry, dropped = ARGV[2 * n + 1], ARGV[2 * n + 2], 0
for i = 1, n do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        dropped = dropped + 1
    end
end
return dropped
"""


async def group_send_many(layer, group_messages):
    """``layer.group_send(group, message)`` for every (group, message) pair, in TWO round trips per
    Redis host for all of them instead of four per pair: one pipeline reads every group's channels,
    one stores every message (``_STORE_LUA``).

    For channels_redis's RedisChannelLayer (pinned in requirements), whose storage this follows:
    a group is a sorted set of channel names, messages wait in a sorted set per channel key
    (``_map_channel_keys_to_connection``), scored by the time they were sent. Every message of one
    call is stored with the same score, so send at most one message per group per call where
    their order matters (``push_batch_message`` carries many): a later call scores later.
    """
    by_host = defaultdict(list)
    for group, message in group_messages:
        layer.require_valid_group_name(group)  # raises TypeError for a bad name
        by_host[layer.consistent_hash(group)].append((group, message))

    async def channels_of(host, pairs):
        pipe = layer.connection(host).pipeline(transaction=False)
        for group, _ in pairs:
            pipe.zremrangebyscore(layer._group_key(group), min=0, max=int(time.time()) - layer.group_expiry)
            pipe.zrange(layer._group_key(group), 0, -1)
        replies = await pipe.execute()
        return [(message, [name.decode() for name in names]) for (_, message), names in zip(pairs, replies[1::2])]

    # host -> [(channel key, serialized message, capacity)], in the order of group_messages
    stores = defaultdict(list)
    for members in await asyncio.gather(*(channels_of(host, pairs) for host, pairs in by_host.items())):
        for message, channel_names in members:
            keys_by_host, serialized, capacities = layer._map_channel_keys_to_connection(channel_names, message)
            for host, keys in keys_by_host.items():
                stores[host] += [(key, serialized[key], capacities[key]) for key in keys]

    async def store(host, entries):
        pipe = layer.connection(host).pipeline(transaction=False)
        for key in dict.fromkeys(key for key, _, _ in entries):
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - int(layer.expiry))
        keys, messages, capacities = zip(*entries)
        pipe.eval(_STORE_LUA, len(keys), *keys, *messages, *capacities, time.time(), layer.expiry)
        dropped = (await pipe.execute())[-1]
        if dropped:
            logger.info("%d of %d messages dropped: their channels were full", dropped, len(entries))

    await asyncio.gather(*(store(host, entries) for host, entries in stores.items()))


def push_to_user(user_id, message):
    """Send ``message`` (a JSON-able dict) to every open connection of the user (from sync code)."""
    async_to_sync(get_channel_layer().group_send)(user_group_name(user_id), push_message(message))


def revocation_message(credential):
    """The control message that ``SyncConsumer.credential_revoked`` closes sockets on."""
    return {"type": "credential.revoked", "credential": credential}


def close_sockets(user_id, credential=None):
    """Close the user's connections opened with ``credential`` (every one when None), from sync code.

    A credential is what ``credential_of`` names: a token's digest or a session's hash.
    """
    async_to_sync(get_channel_layer().group_send)(user_group_name(user_id), revocation_message(credential))


def session_credential(session_key):
    """How a revocation names a session's sockets without sending the session key around."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def credential_of(scope):
    """What authenticated a connection, as ``close_sockets`` names it."""
    if TOKEN_DIGEST_SCOPE_KEY in scope:
        return scope[TOKEN_DIGEST_SCOPE_KEY]
    return session_credential(scope["session"].session_key)
