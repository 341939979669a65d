"""The account API of CONTRACT.md section 2 (Auth): registration and sign-in tokens."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_register_returns_the_user_and_a_token_that_authenticates_me():
    client = APIClient()
    response = client.post(
        "/api/auth/register/",
        {"username": "carol", "password": "a-long-passphrase", "email": "c@example.com", "timezone": "Asia/Tokyo"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["username"] == "carol" and body["user"]["timezone"] == "Asia/Tokyo"
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = client.get("/api/auth/me/").json()
    assert me == {"id": body["user"]["id"], "username": "carol", "email": "c@example.com", "timezone": "Asia/Tokyo"}


def test_token_login_returns_a_token_of_the_user_and_rejects_a_wrong_password(alice):
    response = APIClient().post("/api/auth/token/", {"username": "alice", "password": "a-long-passphrase"}, format="json")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/auth/me/").json()["username"] == "alice"
    wrong = APIClient().post("/api/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert wrong.status_code == 400 and "token" not in wrong.json()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"username": "dave", "password": "a-long-passphrase", "timezone": "Mars/Olympus"}, "timezone"),
        ({"username": "dave", "password": "a-long-passphrase", "timezone": 42}, "timezone"),
        ({"username": "dave", "password": "123"}, "password"),
        ({"username": "alice", "password": "a-long-passphrase"}, "username"),
        ({"password": "a-long-passphrase"}, "username"),
    ],
)
def test_registration_rejects_bad_input_with_the_field_named(alice, payload, field):
    response = APIClient().post("/api/auth/register/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
