"""Pushing messages to a user's open WebSocket connections through the channel layer.

Every connection of a user joins one channel-layer group; anything sent to the group reaches
all of that user's clients and nobody else's. A connection also remembers the credential that
opened it (``credential_of``: a token's digest or a session's hash), so that revoking that
credential closes exactly the sockets it opened (``close_sockets``, tasks/accounts/tokens.py).
"""

import asyncio
import hashlib
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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


async def group_send_many(layer, group_messages):
    """``layer.group_send(group, message)`` for every (group, message) pair, concurrently: a batch
    waits for one round of Redis answers, not one per owner. Send at most one message per group
    per call where their order matters (``push_batch_message`` carries many); a later call's
    messages arrive after an earlier call's. Only the layer's public API: its storage is its own."""
    await asyncio.gather(*(layer.group_send(group, message) for group, message in group_messages))


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
