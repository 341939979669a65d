from django.db import models
from django.db.models import BooleanField, Exists, OuterRef
from django.db.models.expressions import RawSQL


def id_array(ids):
    """``ids`` as the text of a PostgreSQL bigint[] (psycopg's list adapter, in Python, costs the
    relay four times as much for its window of thousands of ids)."""
    return "{" + ",".join(map(str, ids)) + "}"


class OutboxQuerySet(models.QuerySet):
    """The states of outbox rows, as the relay, the admin and ``retry_parked`` see them."""

    def parked(self):
        return self.filter(parked_at__isnull=False)

    def ready(self):
        """Unsent rows the relay may publish now: not parked, and no earlier row of their key parked."""
        return self.filter(sent_at__isnull=True, parked_at__isnull=True).filter(~self._behind_a_parked_row())

    def held(self):
        """Unsent rows waiting behind an earlier parked row of their key (per-key order)."""
        return self.filter(sent_at__isnull=True, parked_at__isnull=True).filter(self._behind_a_parked_row())

    def listed(self, ids):
        """The rows with these ids, asked with one array parameter however many there are (not
        id__in: a literal per id costs the client as much as the statement costs the database)."""
        return self.filter(RawSQL(f"{self._id} = ANY(%s::bigint[])", [id_array(ids)], output_field=BooleanField()))

    def unlisted(self, ids):
        """The rows without these ids (the relay reads around the rows it has in flight). As a hashed
        subplan: for ``id <> ALL(array)`` the planner counts a comparison per element and row, and
        turns to a parallel scan that costs more than it saves."""
        if not ids:
            return self
        return self.exclude(
            RawSQL(f"{self._id} IN (SELECT unnest(%s::bigint[]))", [id_array(ids)], output_field=BooleanField())
        )

    @property
    def _id(self):
        return f'"{self.model._meta.db_table}"."id"'

    def _behind_a_parked_row(self):
        # Served by the outbox_parked index: a probe per row, into the (few) parked rows.
        return Exists(self.model.objects.filter(key=OuterRef("key"), id__lt=OuterRef("id"), parked_at__isnull=False))


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes (transactional outbox).

    ``relay_outbox`` publishes unsent rows in ``id`` order and sets ``sent_at`` only after Kafka
    acknowledged them; a periodic job purges sent rows. ``payload`` holds the exact UTF-8 JSON
    that goes on the wire, so the relay never re-serialises it.

    A row Kafka refuses for good is *parked* (``parked_at``, ``park_reason``): the relay skips it
    and the later rows of its ``key``, and publishes everything else. ``retry_parked`` (or the
    admin action) clears ``parked_at`` once the cause is fixed; ``park_reason`` stays as the
    history of a retried row.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    topic = models.CharField(max_length=255, help_text="Base topic name, without KAFKA_TOPIC_PREFIX.")
    key = models.CharField(max_length=255, help_text="Kafka message key: the task id.")
    payload = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    parked_at = models.DateTimeField(null=True, blank=True, help_text="When Kafka refused this row for good.")
    park_reason = models.TextField(blank=True, help_text="Kafka's refusal (kept after a retry, as history).")

    objects = OutboxQuerySet.as_manager()

    class Meta:
        indexes = [
            # The relay's query: the oldest unsent, unparked rows. A partial index stays small.
            models.Index(
                fields=["id"], condition=models.Q(sent_at__isnull=True, parked_at__isnull=True), name="outbox_pending"
            ),
            # "Is an earlier row of this key parked?", asked per pending row: a tiny index.
            models.Index(fields=["key", "id"], condition=models.Q(parked_at__isnull=False), name="outbox_parked"),
            models.Index(fields=["sent_at"], condition=models.Q(sent_at__isnull=False), name="outbox_sent_at"),
        ]

    def __str__(self):
        state = "sent" if self.sent_at else "parked" if self.parked_at else "pending"
        return f"{self.event_type} {self.event_id} ({state})"


class ProcessedEvent(models.Model):
    """The event ids a consumer group has processed, written in the transaction of the effects.

    A redelivered event finds its row and is skipped, so every effect happens once.
    """

    pk = models.CompositePrimaryKey("consumer_group", "event_id")
    consumer_group = models.CharField(max_length=255)
    event_id = models.UUIDField()
    processed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"{self.consumer_group}: {self.event_id}"
