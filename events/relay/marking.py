"""The sent-marker: acknowledged rows marked sent from a thread of its own, after Kafka's acks."""

import queue
import threading
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db import connection, reset_queries
from django.db.models.sql import UpdateQuery

from events.models import OutboxEvent
from events.relay.statements import PLACEHOLDER_IDS, with_ids

# The time the sent-marker's UPDATE is compiled with (then replaced by each batch's).
PLACEHOLDER_TIME = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


class SentMarker:
    """Marks acknowledged rows sent from a thread of its own (with its own database connection),
    one UPDATE for what was handed over since the last, while the relay reads and publishes the
    next rounds.
    ``pending`` holds the ids handed over and not marked yet: the relay does not read them again."""

    def __init__(self):
        self.pending = set()
        # Compiled once: building and compiling the queryset cost the marker more than the UPDATE
        # of one row (at 50 changes/s, a third of the relay's CPU).
        query = OutboxEvent.objects.listed(PLACEHOLDER_IDS).query.chain(UpdateQuery)
        query.add_update_values({"sent_at": PLACEHOLDER_TIME})
        self._update_sql, self._update_params = query.get_compiler(connection.alias).as_sql()
        self._todo = queue.SimpleQueue()
        self._marked = queue.SimpleQueue()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="outbox-relay-marker", daemon=True)
        self._thread.start()

    def mark(self, ids, sent_at):
        self.pending.update(ids)
        self._todo.put((ids, sent_at))

    def settle(self, timeout=0.0):
        """Forget the rows marked since the last call (waiting up to ``timeout`` seconds for some);
        raise the error that stopped the thread, if one did."""
        try:
            self.pending.difference_update(self._marked.get(timeout=timeout) if timeout else self._marked.get_nowait())
            while True:
                self.pending.difference_update(self._marked.get_nowait())
        except queue.Empty:
            pass
        if self._error is not None:
            raise self._error

    def close(self):
        """Mark what was handed over (unless the database failed), then stop the thread."""
        self._todo.put(None)
        self._thread.join()
        self.settle()

    def _run(self):
        try:
            with connection.cursor() as cursor:
                # The marks are committed without waiting for their WAL to reach the disk (this
                # session only): at a low rate each change cost the marker a WAL flush, at a high one
                # its wait held rows in the window. A PostgreSQL crash can then forget the last
                # fraction of a second of marks (never a change: the writers' commits wait as
                # always, and the WAL keeps its order, so what is lost is a tail of marks), and their
                # rows are sent again: duplicates, which the consumers skip by event id, re-sent in id
                # order after the copies that went before (see "Duplicates are harmless" in events.relay).
                cursor.execute("SET synchronous_commit = off")
            stopping = False
            while not stopping and (work := self._todo.get()) is not None:
                ids, sent_at = list(work[0]), work[1]
                # What was handed over meanwhile joins the same UPDATE: under a backlog the marker
                # trails the acknowledgements, and a statement per batch of them costs it more. The
                # latest acknowledgement's time is after each of them.
                while not stopping:
                    try:
                        work = self._todo.get_nowait()
                    except queue.Empty:
                        break
                    if work is None:
                        stopping = True
                    else:
                        ids.extend(work[0])
                        sent_at = work[1]
                # With DEBUG, Django keeps the last 9000 statements of a connection until a request
                # ends; a window's ids make a statement tens of kilobytes long.
                reset_queries()
                with connection.cursor() as cursor:
                    cursor.execute(self._update_sql, with_ids(self._update_params, ids, {PLACEHOLDER_TIME: sent_at}))
                self._marked.put(ids)
        except Exception as exc:  # handed to the relay's thread, which decides (settle raises it)
            self._error = exc
            self._marked.put(())
        finally:
            connection.close()

