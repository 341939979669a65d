"""An address is confirmed before any reminder is mailed to it: registering sends a signed, expiring
link bound to the address, through the same delivery as reminders; only that link confirms it."""

import re

import pytest
from django.core import signing
from rest_framework.test import APIClient

from notifications import mail
from notifications.confirmation import SALT, confirmation_token
from notifications.models import OutgoingEmail
from tasks.models import User
from testing.waits import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LINK = re.compile(r"http://testserver/confirm-email/(?P<token>[^/\s]+)/")


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = "http://testserver"


def register(username, email):
    response = APIClient().post(
        "/api/auth/register/", {"username": username, "password": "a-long-passphrase", "email": email}, format="json"
    )
    assert response.status_code == 201, response.json()
    return User.objects.get(username=username)


def mailed_link(smtp):
    """Send what is queued and return the confirmation link of the one e-mail received."""
    mail.sweep()
    [message] = smtp.wait_for(1)
    return LINK.search(message.get_payload()), message


def test_registering_with_an_address_mails_a_link_that_confirms_it(client, smtp):
    user = register("ada", "ada@example.org")
    assert user.email_confirmed_at is None
    link, message = mailed_link(smtp)
    assert message["To"] == "ada@example.org" and message["Subject"] == "Confirm your e-mail address"
    assert OutgoingEmail.objects.get(user=user).kind == OutgoingEmail.Kind.CONFIRMATION

    response = client.get(link.group(0).removeprefix("http://testserver"))
    assert response.status_code == 200
    assert "ada@example.org" in response.content.decode()
    user.refresh_from_db()
    assert user.email_confirmed_at is not None


def test_the_api_confirms_with_the_token_of_the_link(smtp):
    user = register("grace", "grace@example.org")
    link, _ = mailed_link(smtp)
    response = APIClient().post("/api/auth/confirm-email/", {"token": link.group("token")}, format="json")
    assert response.status_code == 200
    assert response.json()["email"] == "grace@example.org"
    user.refresh_from_db()
    assert user.email_confirmed_at is not None


def test_registering_without_an_address_sends_nothing():
    register("hopper", "")
    assert not OutgoingEmail.objects.exists()


def refused(token, client):
    page = client.get(f"/confirm-email/{token}/")
    api = APIClient().post("/api/auth/confirm-email/", {"token": token}, format="json")
    return page.status_code, api.status_code, api.json()


def test_a_tampered_link_is_refused(client):
    user = register("mallory", "mallory@example.org")
    token = confirmation_token(user)
    forged = signing.dumps({"user": user.pk, "email": "mallory@example.org"}, salt=SALT, key="not-our-secret-key")
    for token in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged):
        page, api, body = refused(token, client)
        assert (page, api) == (400, 400) and "not valid" in body["token"][0]
    user.refresh_from_db()
    assert user.email_confirmed_at is None


def past_its_age(token, max_age):
    try:
        signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        return True
    return False


def test_an_expired_link_is_refused(client, settings):
    user = register("linus", "linus@example.org")
    token = confirmation_token(user)
    settings.EMAIL_CONFIRMATION_MAX_AGE = 1
    assert wait_for(lambda: past_its_age(token, max_age=1), timeout=5)
    page, api, body = refused(token, client)
    assert (page, api) == (400, 400) and "expired" in body["token"][0]
    user.refresh_from_db()
    assert user.email_confirmed_at is None


def test_a_link_for_an_address_the_user_no_longer_has_is_refused_and_a_new_address_needs_confirming(client):
    user = register("margaret", "margaret@example.org")
    old_token = confirmation_token(user)
    user.email = "margaret@new.example.org"
    user.save()
    page, api, body = refused(old_token, client)
    assert (page, api) == (400, 400) and "no longer yours" in body["token"][0]

    assert client.get(f"/confirm-email/{confirmation_token(user)}/").status_code == 200
    user.refresh_from_db()
    assert user.email_confirmed_at is not None
    user.email = "margaret@third.example.org"
    user.save()
    user.refresh_from_db()
    assert user.email_confirmed_at is None
