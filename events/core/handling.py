"""Step 3 of processing: calling a handler, within its time budget, with its events' coordinates.

Every handler call has a time budget (``CONSUMER_HANDLER_TIMEOUT_SECONDS``, see HandlerBudget): a
call that runs longer fails its event like any error, and every SQL statement of the handler's
transaction is bounded by the same budget (``statement_timeout``, see ``budgeted_transaction``).

Handlers take the validated event dict only; one that needs the Kafka coordinates of the message
(the audit trail) reads them with ``delivery_of(event)``.
"""

import contextvars
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, connection, transaction


class HandlerTimedOut(BaseException):
    """A handler call ran past its time budget. A BaseException, like KeyboardInterrupt, so that a
    handler's own ``except Exception`` does not swallow it; the runtime treats it as a failure."""


# What a handler call may raise that fails its event (retried, then dead-lettered).
HANDLER_FAILURES = (Exception, HandlerTimedOut)


class HandlerBudget:
    """Cuts a handler call that runs longer than ``seconds``, by raising HandlerTimedOut in it.

    Only the main thread receives signals, so only there can pure-Python CPU work be interrupted:
    ``run_consumer`` runs its loop in the main thread. A watchdog thread checks the deadline of the
    running call every tick and, once it is past, sends SIGVTALRM to the main thread (a real signal,
    so that a blocking system call such as a socket read returns EINTR and the handler below
    raises). Not SIGALRM and ``setitimer``: those belong to whoever else keeps an alarm (e.g.
    pytest-timeout). The signal is resent every tick until the call ends, so a handler that
    swallows one is cut again. C code that never returns to Python (a librdkafka flush) is bounded
    by its own timeout only. Until ``start()`` (and outside the main thread) calls are not cut:
    their statements are still bounded by ``budgeted_transaction``.
    """

    SIGNAL = signal.SIGVTALRM

    def __init__(self, seconds):
        self.seconds = seconds
        self._tick = min(max(seconds / 10, 0.01), 0.5)
        self._deadline = None  # of the handler call running now; None between calls
        self._stopped = threading.Event()
        self._watchdog = None
        self._previous_handler = None

    def start(self):
        """Arm the budget for calls in this (the main) thread; False if not in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._stopped.clear()
        self._previous_handler = signal.signal(self.SIGNAL, self._on_signal)
        self._watchdog = threading.Thread(
            target=self._watch, args=(threading.get_ident(),), name="handler-budget", daemon=True
        )
        self._watchdog.start()
        return True

    def stop(self):
        if self._watchdog is None:
            return
        self._stopped.set()
        self._watchdog.join()
        signal.signal(self.SIGNAL, self._previous_handler)
        self._watchdog = None

    def call(self, handler, argument):
        if self._watchdog is None:
            return handler(argument)
        self._deadline = time.monotonic() + self.seconds
        try:
            return handler(argument)
        finally:
            self._deadline = None

    def _on_signal(self, signum, frame):
        # Runs in the main thread between two bytecodes: a call that just ended has cleared its deadline.
        deadline = self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            raise HandlerTimedOut(f"the handler ran longer than its budget of {self.seconds:g}s")

    def _watch(self, main_thread_id):
        while not self._stopped.wait(self._tick):
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                signal.pthread_kill(main_thread_id, self.SIGNAL)


@contextmanager
def budgeted_transaction(seconds):
    """A transaction whose every statement is cut at ``seconds``: a lock wait or a runaway query
    fails the event (retried, dead-lettered) instead of holding the partition."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])
        yield


def database_unreachable(error):
    """True for a lost or refused database connection, which is no event's fault.

    An error the server reported about a statement (a SQLSTATE outside class 08 "connection
    exception" and 57P "operator intervention"), such as the statement_timeout of the handler's
    budget (57014) or a deadlock (40P01), is a failure of the event like any other.
    """
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None) or ""
    return not sqlstate or sqlstate.startswith(("08", "57P"))


@dataclass(frozen=True)
class Delivery:
    """Where the event being handled came from."""

    topic: str
    partition: int
    offset: int
    consumer_group: str


_deliveries = contextvars.ContextVar("deliveries")


def delivery_of(event):
    """Where ``event``, being handled right now, was read (LookupError outside a handler)."""
    return _deliveries.get()[event["event_id"]]


def call_handler(handler, argument, messages_and_events, *, group, budget):
    """``handler(argument)`` within ``budget``, with the coordinates of its (message, event) pairs
    available to ``delivery_of``."""
    token = _deliveries.set(
        {
            event["event_id"]: Delivery(message.topic, message.partition, message.offset, group)
            for message, event in messages_and_events
        }
    )
    try:
        budget.call(handler, argument)
    finally:
        _deliveries.reset(token)
