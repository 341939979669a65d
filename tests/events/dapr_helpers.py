"""Dapr without the sidecar (the real one: tests/deploy/daprd_helpers.py), from both sides of the delivery pod:

- a stand-in for the sidecar's publish API: a real HTTP server on a local port that speaks the
  protocol (POST /v1.0/publish/<pubsub>/<topic>?metadata.*) and records every request;
- the sidecar's calls into the app: HTTP requests to the delivery application
  (todo_project/delivery.py), made in this process over ASGI so that tests may register consumers.
"""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import httpx
import pytest
from asgiref.sync import async_to_sync

from testing.http_servers import serve_in_background, stop
from todo_project.delivery import TOKEN_HEADER, delivery_application

APP_API_TOKEN = "test-app-api-token"


class FakeDaprSidecar:
    """Records each publish request; answers 204, or first the answers queued in ``failures``:
    a status, or (status, JSON body) as Dapr sends its errors."""

    def __init__(self):
        self.requests = []
        self.failures = []
        sidecar = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                path, _, query = self.path.partition("?")
                sidecar.requests.append(
                    {"path": path, "query": dict(parse_qsl(query)), "content_type": self.headers["Content-Type"],
                     "body": body}
                )
                answer = sidecar.failures.pop(0) if sidecar.failures else 204
                status, body = answer if isinstance(answer, tuple) else (answer, None)
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = serve_in_background(self.server)

    def close(self):
        stop(self.server, self.thread)


@pytest.fixture
def dapr_sidecar(settings):
    """EVENT_TRANSPORT=dapr with the fake sidecar on DAPR_HTTP_PORT and component todo-pubsub."""
    sidecar = FakeDaprSidecar()
    settings.EVENT_TRANSPORT = "dapr"
    settings.DAPR_HTTP_PORT = sidecar.port
    settings.DAPR_PUBSUB_NAME = "todo-pubsub"
    yield sidecar
    sidecar.close()


class DeliveryClient:
    """Requests to the delivery application as the sidecar makes them: with its token, unless told."""

    def __init__(self, application, token):
        self.application, self.token = application, token

    def request(self, method, path, body=b"", *, content_type="application/json", token=..., headers=None):
        headers = {"content-type": content_type, **(headers or {})}
        token = self.token if token is ... else token
        if token is not None:
            headers[TOKEN_HEADER.decode()] = token

        async def call():
            transport = httpx.ASGITransport(app=self.application)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                return await client.request(method, path, content=body, headers=headers)

        return async_to_sync(call)()

    def get(self, path, **options):
        return self.request("GET", path, **options)

    def post(self, path, body=b"", **options):
        return self.request("POST", path, body, **options)


@pytest.fixture
def dapr_delivery(dapr_sidecar, settings):
    """The delivery application (EVENT_TRANSPORT=dapr, the fake sidecar, DAPR_APP_API_TOKEN set)."""
    settings.DAPR_APP_API_TOKEN = APP_API_TOKEN
    return DeliveryClient(delivery_application(), APP_API_TOKEN)
