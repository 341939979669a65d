"""Periodic housekeeping of the event tables (scheduled by django-celery-beat)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from events.models import OutboxEvent, ProcessedEvent

# Sent outbox rows are only kept for inspection.
OUTBOX_RETENTION = timedelta(days=1)
# Processed-event ids must outlive every redelivery of their event: Kafka keeps task-events for
# 7 days, so twice that leaves room for a consumer that was down for days.
PROCESSED_EVENT_RETENTION = timedelta(days=14)


@shared_task(name="events.purge_sent_outbox")
def purge_sent_outbox():
    deleted, _ = OutboxEvent.objects.filter(sent_at__lt=timezone.now() - OUTBOX_RETENTION).delete()
    return deleted


@shared_task(name="events.purge_processed_events")
def purge_processed_events():
    deleted, _ = ProcessedEvent.objects.filter(processed_at__lt=timezone.now() - PROCESSED_EVENT_RETENTION).delete()
    return deleted
