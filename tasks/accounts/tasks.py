"""Periodic housekeeping of the accounts' tables (scheduled by django-celery-beat, tasks migration 0012)."""

from celery import shared_task

from tasks.accounts.tokens import purge_expired_tokens


@shared_task(name="tasks.purge_expired_tokens")
def purge_expired_api_tokens():
    """Delete expired API tokens, closing their sockets (requests no longer sweep them: tasks.accounts.tokens)."""
    return purge_expired_tokens()
