"""Readiness (``/readyz``): which dependencies a process needs before it takes work.

Each process names its checks and the ones it cannot work without: the web process needs only
the database (a Kafka outage is what the outbox absorbs, so Kafka's state is reported but never
takes web pods out of the Service); a worker needs the database and Kafka. The answer names each
check as "ok" or "error" and nothing more: the probe is reachable by anyone who reaches the pod,
so the failure's detail goes to the log, not the response. A result is reused for
READINESS_CACHE_SECONDS, so that probes, load balancers and curious clients together cost at most
one round of checks a second.
"""

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import connection

from events.transports.kafka.admin import check_broker

logger = logging.getLogger(__name__)

OK, ERROR = "ok", "error"


def check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis():
    timeout = settings.READINESS_TIMEOUT_SECONDS
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_kafka():
    check_broker(timeout=settings.READINESS_TIMEOUT_SECONDS)


class Readiness:
    """``checks`` (name -> callable raising when unhealthy), of which ``required`` decide readiness."""

    def __init__(self, checks, *, required):
        self.checks, self.required = dict(checks), frozenset(required)
        self._lock = threading.Lock()
        self._result, self._checked_at = None, 0.0

    def __call__(self):
        """(ready, {name: "ok" | "error"}), at most READINESS_CACHE_SECONDS old."""
        # Under the lock, concurrent probes wait for one round of checks instead of each running one.
        with self._lock:
            if self._result is None or time.monotonic() - self._checked_at >= settings.READINESS_CACHE_SECONDS:
                self._result, self._checked_at = self._check(), time.monotonic()
            return self._result

    def _check(self):
        results = {}
        for name, check in self.checks.items():
            try:
                check()
                results[name] = OK
            except Exception:  # noqa: BLE001 - any failure means "not ready"; the log says why
                logger.warning("readiness check %s failed", name, exc_info=True)
                results[name] = ERROR
        return all(results[name] == OK for name in self.required), results

    def report(self):
        """(HTTP status, JSON body) of /readyz."""
        ready, results = self()
        return (200 if ready else 503), {"status": "ok" if ready else "unavailable", "checks": results}


WEB = Readiness({"database": check_database, "redis": check_redis, "kafka": check_kafka}, required={"database"})
WORKER = Readiness({"database": check_database, "kafka": check_kafka}, required={"database", "kafka"})
