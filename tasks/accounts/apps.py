from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tasks.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from tasks.accounts import tokens  # noqa: F401  (connects the revocation receivers)
