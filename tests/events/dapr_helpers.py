"""A stand-in for the Dapr sidecar's publish API, which cannot run here: a real HTTP server on a
local port that speaks the protocol (POST /v1.0/publish/<pubsub>/<topic>?metadata.*) and
records every request."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest


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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dapr_sidecar(settings):
    """EVENT_TRANSPORT=dapr with the fake sidecar on DAPR_HTTP_PORT and component todo-pubsub."""
    sidecar = FakeDaprSidecar()
    settings.EVENT_TRANSPORT = "dapr"
    settings.DAPR_HTTP_PORT = sidecar.port
    settings.DAPR_PUBSUB_NAME = "todo-pubsub"
    yield sidecar
    sidecar.close()
