"""Running a consumer runtime as a long-lived worker process (``run_consumer``, ``run_scheduler``)."""

import logging
import signal

from django.conf import settings
from django.core.management.base import CommandError

from events.core.breaker import DeadLetterRateExceeded
from events.worker_http import start_worker_http_server

logger = logging.getLogger("events.consumer")


def run_in_foreground(runtime):
    """Run ``runtime`` until SIGTERM or SIGINT, which finish the current batch, commit and close.

    With METRICS_PORT set, /metrics, /healthz and /readyz are served on it for Prometheus and probes.
    """

    def request_stop(signum, frame):
        logger.info("consumer %s: %s received, finishing the current batch", runtime.name, signal.Signals(signum).name)
        runtime.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = None
    if settings.METRICS_PORT:
        server = start_worker_http_server(settings.METRICS_PORT, runtime.health, addr=settings.METRICS_ADDR)
    try:
        runtime.run()
    except DeadLetterRateExceeded as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if server is not None:
            server.shutdown()
