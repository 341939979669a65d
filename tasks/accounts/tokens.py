"""API tokens (django-rest-knox) and what revoking a credential does to open WebSockets.

A token is issued per sign-in (``POST /api/auth/token/``, registration, a password change) and
stored only as its SHA-512 digest; it expires ``API_TOKEN_TTL_HOURS`` after issue. Revoking is
deleting the row, whoever does it (``DELETE /api/auth/token/``, the admin, the clean-up of
expired tokens — a presented one at once, the others hourly by ``purge_expired_tokens`` — a
password change, the user's deletion): ``post_delete`` then closes the sockets that token opened. Signing out closes the sockets of that session; a password change, from any
path (``User.save`` sends ``password_changed``), revokes every token and closes every socket of
the user. Sockets are closed after commit, so a rolled-back revocation closes nothing.
"""

import binascii
from functools import lru_cache, partial

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import connection, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from events.retention import purge_in_batches

from tasks.models import password_changed
from tasks.realtime.groups import close_sockets, session_credential

INVALID_TOKEN = _("Invalid token.")  # knox's message, word for word


def issue(user):
    """A new token of ``user``: the only time it exists in clear."""
    _instance, token = AuthToken.objects.create(user)
    return token


@lru_cache
def _token_with_user_sql():
    """The token row of a digest joined with its user's row, every column of both, in model field order."""
    token_fields, user_fields = AuthToken._meta.concrete_fields, get_user_model()._meta.concrete_fields
    columns = [f"t.{connection.ops.quote_name(f.column)}" for f in token_fields]
    columns += [f"u.{connection.ops.quote_name(f.column)}" for f in user_fields]
    return (
        f"SELECT {', '.join(columns)} FROM {AuthToken._meta.db_table} t "
        f"JOIN {get_user_model()._meta.db_table} u ON u.{get_user_model()._meta.pk.column} = t.user_id "
        f"WHERE t.digest = %s"
    )


def token_with_user(digest):
    """The AuthToken whose digest is ``digest``, its user loaded, or None: one primary-key lookup."""
    with connection.cursor() as cursor:
        cursor.execute(_token_with_user_sql(), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token_fields, user_model = AuthToken._meta.concrete_fields, get_user_model()
    token = AuthToken.from_db(connection.alias, [f.attname for f in token_fields], row[: len(token_fields)])
    token.user = user_model.from_db(
        connection.alias, [f.attname for f in user_model._meta.concrete_fields], row[len(token_fields):]
    )
    return token


class TokenAuthentication(knox_auth.TokenAuthentication):
    """knox's token authentication (REST, WebSocket, MCP), with two costs of each request cut
    (bench/profile_web.py):
    - knox looks the token up by its key prefix and compares the digests of every candidate, with
      an ORM query built anew per request (a quarter of a create-task request's Python work);
      here the token's digest, the table's primary key, finds the one row, token and user, by
      SQL written once. The same tokens are accepted: a token is its digest's row.
    - knox sweeps the user's other tokens on every request (one more query). The presented token
      is still refused, and deleted, once expired; the other expired tokens are deleted by the
      hourly housekeeping (``purge_expired_tokens``), which closes their sockets."""

    def authenticate_credentials(self, token):
        try:
            digest = hash_token(token.decode())
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise AuthenticationFailed(INVALID_TOKEN) from None
        auth_token = token_with_user(digest)
        if auth_token is None or self._cleanup_token(auth_token):
            raise AuthenticationFailed(INVALID_TOKEN)
        return self.validate_user(auth_token)

    def _cleanup_token(self, auth_token):
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            knox_auth.token_expired.send(sender=self.__class__, username=auth_token.user.get_username(), source="auth_token")
            return True
        return False


class TokenAuthenticationScheme(KnoxTokenScheme):
    """The OpenAPI document names it as knox's own (drf-spectacular matches classes by path)."""

    target_class = "tasks.accounts.tokens.TokenAuthentication"


def purge_expired_tokens():
    """Delete the expired tokens (a batch per transaction); their sockets close. Returns how many."""
    return purge_in_batches(AuthToken.objects.filter(expiry__lt=timezone.now()))


@receiver(post_delete, dispatch_uid="tasks.accounts.tokens.close_sockets_of_revoked_token")
def close_sockets_of_revoked_token(sender, instance, **kwargs):
    if isinstance(instance, AuthToken):  # the sender is the proxy class when the admin deletes
        transaction.on_commit(partial(close_sockets, instance.user_id, instance.digest))


@receiver(user_logged_out, dispatch_uid="tasks.accounts.tokens.close_sockets_of_session")
def close_sockets_of_session(sender, request, user, **kwargs):
    session_key = request.session.session_key
    if user is not None and session_key:
        transaction.on_commit(partial(close_sockets, user.pk, session_credential(session_key)))


@receiver(password_changed, dispatch_uid="tasks.accounts.tokens.revoke_credentials_of_user")
def revoke_credentials_of_user(sender, user, **kwargs):
    """Sessions end by themselves (their hash no longer matches the password); tokens are deleted."""
    AuthToken.objects.filter(user=user).delete()
    transaction.on_commit(partial(close_sockets, user.pk))
