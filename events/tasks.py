"""Periodic housekeeping of the event tables (scheduled by django-celery-beat)."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from events.models import ProcessedEvent
from events.outbox import purge_sent
from events.retention import purge_in_batches

# Processed-event ids must outlive every redelivery of their event: Kafka keeps task-events for
# 7 days, so twice that leaves room for a consumer that was down for days.
PROCESSED_EVENT_RETENTION = timedelta(days=14)


@shared_task(name="events.purge_sent_outbox")
def purge_sent_outbox():
    """Delete outbox rows that Kafka confirmed over a day ago."""
    return purge_sent()


@shared_task(name="events.purge_processed_events")
def purge_processed_events():
    return purge_in_batches(ProcessedEvent.objects.filter(processed_at__lt=timezone.now() - PROCESSED_EVENT_RETENTION))
