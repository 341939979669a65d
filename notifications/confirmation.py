"""Confirming a user's e-mail address before any reminder is mailed to it.

Registering with an address queues a confirmation e-mail (through the same delivery as reminders,
``notifications.mail``) with a link carrying a signed token. The token names the user and the
address, expires after EMAIL_CONFIRMATION_MAX_AGE seconds, and is signed with SECRET_KEY under
its own salt: a tampered token, an old one, or one for an address the user no longer has is
refused. Confirming sets ``User.email_confirmed_at``; changing the address clears it again.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from notifications.mail import queue_email
from notifications.models import OutgoingEmail

SALT = "notifications.confirm-email"


class InvalidConfirmation(Exception):
    """The link is tampered with, expired, or for an address the user no longer has."""


def confirmation_token(user):
    return signing.dumps({"user": user.pk, "email": user.email}, salt=SALT)


def confirmation_link(user):
    return settings.SITE_URL + reverse("confirm-email", args=[confirmation_token(user)])


def request_email_confirmation(user):
    """Queue the confirmation e-mail of ``user``'s address (nothing when they gave none)."""
    if not user.email or user.email_confirmed_at:
        return None
    with transaction.atomic():
        return queue_email(
            user=user,
            kind=OutgoingEmail.Kind.CONFIRMATION,
            subject="Confirm your e-mail address",
            body=(
                f"Hello {user.username},\n\n"
                f"open this link to receive your reminders at {user.email}:\n\n"
                f"{confirmation_link(user)}\n\n"
                "It stays valid for "
                f"{settings.EMAIL_CONFIRMATION_MAX_AGE // 3600} hours. If you did not sign up, ignore this e-mail."
            ),
        )


def confirm_email(token):
    """Confirm the address a token was issued for; returns the user. Raises InvalidConfirmation."""
    try:
        claim = signing.loads(token, salt=SALT, max_age=settings.EMAIL_CONFIRMATION_MAX_AGE)
    except signing.SignatureExpired:
        raise InvalidConfirmation("This confirmation link has expired.") from None
    except signing.BadSignature:
        raise InvalidConfirmation("This confirmation link is not valid.") from None
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().filter(pk=claim.get("user")).first()
        if user is None or not user.email or user.email != claim.get("email"):
            raise InvalidConfirmation("This confirmation link is for an address that is no longer yours.")
        if user.email_confirmed_at is None:
            user.email_confirmed_at = timezone.now()
            user.save(update_fields=["email_confirmed_at"])
    return user
