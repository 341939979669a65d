"""The HTTP side of a long-running worker: ``/metrics`` (Prometheus), ``/healthz`` (liveness) and
``/readyz`` (readiness: the database and Kafka, see events/readiness.py).

Workers (``run_consumer``, and any other loop that wants it) serve both on ``METRICS_PORT`` when
it is set; the Helm chart sets it and points its probes and scrape annotations there. Under
``make run`` it is unset, so the several workers on one machine do not compete for a port.
"""

import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.db import connection
from prometheus_client import make_wsgi_app

from events import readiness

logger = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # probes every few seconds would flood the log
        pass


STATUS_LINES = {200: "200 OK", 503: "503 Service Unavailable"}


def start_worker_http_server(port, health, *, addr="0.0.0.0", ready=readiness.WORKER):
    """Serve in a daemon thread; ``health()`` returns (alive, detail), ``ready`` is a Readiness.
    Returns the server."""
    metrics = make_wsgi_app()

    def json_response(start_response, status, body):
        start_response(STATUS_LINES[status], [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            alive, detail = health()
            return json_response(start_response, 200 if alive else 503,
                                 {"status": "ok" if alive else "unavailable", "detail": detail})
        if environ.get("PATH_INFO") == "/readyz":
            try:
                return json_response(start_response, *ready.report())
            finally:
                connection.close()  # each request has a thread of its own: leave no connection behind
        return metrics(environ, start_response)

    server = make_server(addr, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    logger.info("serving /metrics, /healthz and /readyz on http://%s:%d", addr, port)
    return server
