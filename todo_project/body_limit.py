"""ASGI middleware: request bodies over MAX_REQUEST_BODY_BYTES are answered 413, on every route.

It sits in front of the whole application (todo_project/asgi.py), so the REST API, the admin,
the web app and the MCP server at /mcp/ (which is not a Django view) share one limit. A
Content-Length over the limit is refused before anything reads the body; a body sent without
one (chunked) is counted as it arrives, and the application's read fails at the first byte
over the limit, which becomes the same 413 unless the application already answered.
"""

import json


class BodyTooLarge(Exception):
    """The request body grew past the limit while the application read it."""


def _content_length(scope):
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return value
    return None


async def _refuse(send, max_bytes):
    body = json.dumps({"detail": f"The request body is larger than {max_bytes} bytes."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send, self.max_bytes)
            return
        received = 0
        answered = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def watched_send(message):
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not answered:
                await _refuse(send, self.max_bytes)
