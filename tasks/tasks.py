"""Periodic housekeeping of the web app's tables (scheduled by django-celery-beat, migration 0008)."""

from importlib import import_module

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from events.retention import purge_in_batches
from tasks.sync import purge_sync_log


@shared_task(name="tasks.purge_sync_log")
def purge_old_sync_changes():
    """Delete sync-log changes older than SYNC_LOG_RETENTION_DAYS (their cursors then get 410)."""
    return purge_sync_log()


@shared_task(name="tasks.clear_expired_sessions")
def clear_expired_sessions():
    """Delete expired sign-in sessions in bounded batches (Django's clearsessions does it in one DELETE)."""
    session_model = import_module(settings.SESSION_ENGINE).SessionStore.get_model_class()
    return purge_in_batches(session_model.objects.filter(expire_date__lt=timezone.now()))

