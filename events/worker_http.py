"""The HTTP side of a long-running worker: ``/metrics`` (Prometheus) and ``/healthz`` (liveness).

Workers (``run_consumer``, and any other loop that wants it) serve both on ``METRICS_PORT`` when
it is set; the Helm chart sets it and points its probes and scrape annotations there. Under
``make run`` it is unset, so the several workers on one machine do not compete for a port.
"""

import json
import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

logger = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # probes every few seconds would flood the log
        pass


def start_worker_http_server(port, health, *, addr="0.0.0.0"):
    """Serve in a daemon thread; ``health()`` returns (alive, detail). Returns the server."""
    metrics = make_wsgi_app()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            alive, detail = health()
            body = json.dumps({"status": "ok" if alive else "unavailable", "detail": detail}).encode()
            start_response("200 OK" if alive else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        return metrics(environ, start_response)

    server = make_server(addr, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    logger.info("serving /metrics and /healthz on http://%s:%d", addr, port)
    return server
