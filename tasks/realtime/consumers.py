"""The realtime sync endpoint ``/ws/sync/`` (CONTRACT.md section 3).

Every connection of a user joins the user's channel-layer group (tasks.realtime.groups); whatever
is sent to that group as ``{"type": "push", "message": ...}`` — the realtime bridge's
``sync.task_changed`` events and the notification service's ``notification.created`` — goes
to the browser as JSON, unchanged; ``{"type": "push.batch", "messages": [...]}`` (the bridge's
batches) sends each of them so, in order. The socket is one-way: what clients send is ignored.

Revoking the credential that opened a socket (its token, its session, or every credential of
the user on a password change) sends the group ``credential.revoked``: the sockets it names
close with 4401, as an unauthenticated handshake does (see tasks/accounts/tokens.py).
"""

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tasks.realtime.groups import credential_of, user_group_name

# Application close code for "not authenticated" (4000-4999 are free for applications).
CLOSE_UNAUTHENTICATED = 4401


class SyncConsumer(AsyncJsonWebsocketConsumer):
    group = None
    credential = None

    async def dispatch(self, message):
        """Run the message's handler without channels' ``aclose_old_connections`` first.

        Channels closes stale database connections before every handler, a hop through the
        worker's one thread for sync code; a burst to hundreds of sockets then queues every push
        behind that thread. This consumer's handlers use no database (the handshake's
        authentication ran in the middleware, with its own connection handling)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a handshake rejected with HTTP 403 gives the browser no close code,
            # and clients need 4401 to tell "sign in again" from "network trouble, retry".
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.credential = credential_of(self.scope)
        self.group = user_group_name(user.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Clients have nothing to say over the socket; changes go through the REST API."""

    async def push(self, event):
        if self.group is not None:  # not after a revocation closed the socket
            await self.send_json(event["message"])

    async def push_batch(self, event):
        for message in event["messages"]:
            await self.push({"message": message})

    async def credential_revoked(self, event):
        if self.group is None or event["credential"] not in (None, self.credential):
            return  # closed already (a token's revocation and a password change both say so), or not ours
        await self.channel_layer.group_discard(self.group, self.channel_name)
        self.group = None
        await self.close(code=CLOSE_UNAUTHENTICATED)
