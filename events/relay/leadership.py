"""Leadership: one relay at a time holds a PostgreSQL session advisory lock (see "One relay at a
time" in events.relay), and waits for commits (NOTIFY) on that lock's connection."""

import logging
import select

import psycopg
from django.db import connection

logger = logging.getLogger("events.relay")

# Any constant bigint shared by every relay of one database: the leader lock's key.
LEADER_LOCK_KEY = 0x6F7574626F78  # "outbox"


def lock_connection():
    """A connection of its own for the lock (and LISTEN): the lock lives as long as its session."""
    params = connection.get_connection_params()
    return psycopg.connect(**params, autocommit=True)


def lead(lock_conn, stop, poll_interval):
    """Stand by until this relay holds the leader lock (True), or until ``stop`` is set (False)."""
    standby_logged = False
    while not stop.is_set():
        if lock_conn.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY]).fetchone()[0]:
            return True
        if not standby_logged:
            logger.info("relay: standby; another relay holds the leader lock")
            standby_logged = True
        stop.wait(poll_interval)
    return False


def notified(lock_conn, timeout):
    """Whether a NOTIFY arrived (waiting up to ``timeout`` seconds for one); consumes those in.

    The wait is a select() on the connection's socket: psycopg's ``notifies(timeout=...)``
    costs ~0.8 ms of CPU whenever its timeout expires (it raises and catches an error), which
    was most of an idle relay's CPU and, at 50 changes/s, a quarter of a busy one's."""
    if sum(1 for _ in lock_conn.notifies(timeout=0)):  # every one in (they all mean "read")
        return True
    if timeout and select.select([lock_conn.fileno()], [], [], timeout)[0]:
        # Readable: a notification, or the connection's end (which raises here).
        return bool(sum(1 for _ in lock_conn.notifies(timeout=0)))
    return False
