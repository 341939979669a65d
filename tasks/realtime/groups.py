"""Pushing messages to a user's open WebSocket connections through the channel layer.

Every connection of a user joins one channel-layer group; anything sent to the group reaches
all of that user's clients and nobody else's. A connection also remembers the credential that
opened it (``credential_of``: a token's digest or a session's hash), so that revoking that
credential closes exactly the sockets it opened (``close_sockets``, tasks/accounts/tokens.py).
"""

import asyncio
import hashlib
import logging
import threading
import time
from collections import defaultdict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

# Where the handshake's authentication (tasks.accounts.auth) leaves the digest of the token that
# authenticated it; a session's socket has none.
TOKEN_DIGEST_SCOPE_KEY = "api_token_digest"

logger = logging.getLogger(__name__)


def user_group_name(user_id):
    return f"user.{user_id}"


def push_message(message):
    """The channel-layer message that ``SyncConsumer.push`` sends to the browser as ``message``."""
    return {"type": "push", "message": message}


def push_batch_message(messages):
    """The channel-layer message that ``SyncConsumer.push_batch`` sends to the browser as one JSON
    message per item of ``messages``, in their order: a batch costs one group send, not one per item."""
    return {"type": "push.batch", "messages": messages}


# The members of each group of KEYS (group keys), those that joined before ARGV[1] dropped first
# (their membership expired), as channels-redis's own group_send reads one group: one command for
# every group of a call, not two each.
_GROUP_MEMBERS = """
local members = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return members
"""

# Stores one message on each of KEYS (channel keys): ARGV holds the messages, then each key's
# capacity, then the time the messages are stored at (their score: receivers pop the lowest
# first), the score below which a stored message has expired, and the keys' expiry. Each step is
# what channels-redis's own group_send does for one group; here for every group of a call at once.
_STORE_ON_CHANNELS = """
local count = #KEYS
local now, stale_before, expiry = ARGV[2 * count + 1], ARGV[2 * count + 2], ARGV[2 * count + 3]
local full = 0
for i = 1, count do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale_before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[count + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        full = full + 1
    end
end
return full
"""


async def group_send_many(layer, group_messages):
    """``layer.group_send(group, message)`` for every (group, message) pair, in two Redis round
    trips per host whatever the number of groups: one script reads every group's members, one
    stores each message on its members' channels (``group_send`` costs four round trips
    per group, and the realtime bridge sends to every owner of a batch).

    What is stored is what ``group_send`` stores: the layer's own key names, hashing, capacities
    and serialisation (``layer._map_channel_keys_to_connection``) make the entries, so any
    receiver of the same channels-redis reads them (a web worker of the previous release
    included). A message to a full channel is dropped, as ``group_send`` drops it. Send at most
    one message per group per call where their order matters (``push_batch_message`` carries
    many): messages of one call share their score; a later call's messages arrive after an
    earlier call's.
    """
    by_host = defaultdict(list)
    for group, message in group_messages:
        assert layer.require_valid_group_name(group), "Group name not valid"
        by_host[layer.consistent_hash(group)].append((group, message))
    members = await asyncio.gather(*(_members(layer, index, pairs) for index, pairs in by_host.items()))
    stores = defaultdict(lambda: ([], [], []))  # host index -> (channel keys, messages, capacities)
    for group_members in members:
        for message, channels in group_members:
            if not channels:
                continue
            keys_by_host, message_of_key, capacity_of_key = layer._map_channel_keys_to_connection(channels, message)
            for index, keys in keys_by_host.items():
                store_keys, messages, capacities = stores[index]
                store_keys.extend(keys)
                messages.extend(message_of_key[key] for key in keys)
                capacities.extend(capacity_of_key[key] for key in keys)
    await asyncio.gather(*(_store(layer, index, *store) for index, store in stores.items()))


async def _members(layer, index, group_messages):
    """[(message, the group's channel names)] for the groups on host ``index``."""
    members = await layer.connection(index).register_script(_GROUP_MEMBERS)(
        keys=[layer._group_key(group) for group, _ in group_messages], args=[int(time.time()) - layer.group_expiry]
    )
    return [(message, [name.decode() for name in names]) for (_, message), names in zip(group_messages, members)]


async def _store(layer, index, keys, messages, capacities):
    now = time.time()
    connection = layer.connection(index)
    full = await connection.register_script(_STORE_ON_CHANNELS)(
        keys=keys, args=[*messages, *capacities, now, int(now) - int(layer.expiry), int(layer.expiry)]
    )
    if full:
        logger.info("%s of %s channel keys full: their group messages dropped", full, len(keys))


def push_to_user(user_id, message):
    """Send ``message`` (a JSON-able dict) to every open connection of the user (from sync code)."""
    async_to_sync(get_channel_layer().group_send)(user_group_name(user_id), push_message(message))


def push_to_users(messages_by_user):
    """``push_to_user`` for many users at once, from sync code: each user's messages, in order, in
    ONE group send (``push_batch_message``), all users' concurrently (``group_send_many``), on an
    asyncio loop that lives as long as the calling thread. The channel layer keeps its Redis
    connections per loop, so a call waits for one round of Redis answers, instead of opening new
    connections on a new loop as ``async_to_sync`` does."""
    loop = getattr(_thread_loop, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_loop.loop = asyncio.new_event_loop()
    group_messages = [(user_group_name(user_id), push_batch_message(messages)) for user_id, messages in messages_by_user.items()]
    loop.run_until_complete(group_send_many(get_channel_layer(), group_messages))


_thread_loop = threading.local()


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
