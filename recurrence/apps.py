from django.apps import AppConfig


class RecurrenceConfig(AppConfig):
    name = "recurrence"
    default_auto_field = "django.db.models.BigAutoField"
