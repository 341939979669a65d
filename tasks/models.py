import zoneinfo

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models


def validate_timezone(value):
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None


class User(AbstractUser):
    """A person with tasks. Their time zone gives naive input times and recurrence their meaning."""

    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
