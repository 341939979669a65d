from django.db import models


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes (transactional outbox).

    ``relay_outbox`` publishes unsent rows in ``id`` order and sets ``sent_at`` only after Kafka
    acknowledged them; a periodic job purges sent rows. ``payload`` holds the exact UTF-8 JSON
    that goes on the wire, so the relay never re-serialises it.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    topic = models.CharField(max_length=255, help_text="Base topic name, without KAFKA_TOPIC_PREFIX.")
    key = models.CharField(max_length=255, help_text="Kafka message key: the task id.")
    payload = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The relay's only query: the oldest unsent rows. A partial index stays small.
            models.Index(fields=["id"], condition=models.Q(sent_at__isnull=True), name="outbox_unsent"),
            models.Index(fields=["sent_at"], condition=models.Q(sent_at__isnull=False), name="outbox_sent_at"),
        ]

    def __str__(self):
        return f"{self.event_type} {self.event_id} ({'sent' if self.sent_at else 'pending'})"


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
