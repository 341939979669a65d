from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class EventsConfig(AppConfig):
    name = "events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        check_outbox_writer(settings.OUTBOX_WRITER)


def check_outbox_writer(dotted_path):
    """Resolve OUTBOX_WRITER when a process starts: a wrong value would otherwise surface only at
    the first change a user makes, as a 500 for them."""
    from events.outbox import outbox_writer  # the models behind it load once the apps are ready

    try:
        writer = outbox_writer(dotted_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"OUTBOX_WRITER={dotted_path!r} cannot be imported ({exc}); leave it unset for "
            "events.outbox.write_rows, or name a function writer([(event, key), ...]) -> [row, ...]"
        ) from exc
    if not callable(writer):
        raise ImproperlyConfigured(f"OUTBOX_WRITER={dotted_path!r} names {type(writer).__name__}, not a function")
