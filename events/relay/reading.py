"""Reading the outbox: the next ready rows in id order, leaving out the window (rows published and
not marked sent yet), and how many the next round asks for."""

import time

from django.db import connection
from django.db.models import FloatField, TextField
from django.db.models.functions import Cast, Extract

from events.core.publishing import OutboxRow
from events.models import OutboxEvent
from events.relay.metrics import RELAY_LAG
from events.relay.statements import PLACEHOLDER_IDS, with_ids

# The smallest round: what the relay reads while it keeps up (a burst's first events go out at once).
SMALLEST_BATCH = 250
# OutboxRow's columns, as the database sends them cheapest (the event id as text, the time as a float).
READ_COLUMNS = (
    "id", "topic", "key", "payload", "event_type", Cast("event_id", TextField()),
    Cast(Extract("created_at", "epoch"), FloatField()), "park_reason",
)


class AdaptiveBatch:
    """How many rows the next round reads: the smallest batch while the relay keeps up, doubling
    (up to ``largest``) while every read fills its batch (a backlog), back to the smallest at the
    first read that does not."""

    def __init__(self, largest, smallest=SMALLEST_BATCH):
        self.smallest = min(smallest, largest)
        self.largest = largest
        self.size = self.smallest

    def read(self, count):
        """Adjust to a read that returned ``count`` rows (of ``size`` asked for)."""
        self.size = min(2 * self.size, self.largest) if count >= self.size else self.smallest



class ReadyRows:
    """The read of the next ready rows (``OutboxEvent.objects.ready()``), on the relay's connection."""

    def __init__(self):
        self._statements = {}  # (rows asked, a window to leave out?) -> the read's (sql, params)

    def _statement(self, count, windowed):
        """The read's SQL and parameters, compiled from ``ready()`` once per batch size and kind:
        building and compiling the queryset cost more than running it at light load (py-spy)."""
        key = (count, windowed)
        if key not in self._statements:
            query = OutboxEvent.objects.ready()
            if windowed:
                query = query.unlisted(PLACEHOLDER_IDS)
            query = query.order_by("id").values_list(*READ_COLUMNS)[:count]
            self._statements[key] = query.query.sql_with_params()
        return self._statements[key]

    def read(self, count, window):
        """The next ``count`` ready rows in id order, leaving out the ids in ``window``."""
        sql, params = self._statement(count, bool(window))
        if window:
            params = with_ids(params, window)
        # A plain cursor and a tuple per row: the ORM's row iterator and Django's Python loader of
        # timestamps with time zone cost more than the rest of the round (py-spy).
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = list(map(OutboxRow._make, cursor.fetchall()))
        RELAY_LAG.set(time.time() - rows[0].created_at if rows else 0)
        return rows
