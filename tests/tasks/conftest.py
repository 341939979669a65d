"""Fixtures of the tasks tests: API clients of registered users, and plain users."""

import pytest
from rest_framework.test import APIClient

from tasks.models import User


def register(username, timezone="UTC"):
    """An API client authenticated with the token of a user registered through the API."""
    client = APIClient()
    response = client.post(
        "/api/auth/register/", {"username": username, "password": "a-long-passphrase", "timezone": timezone},
        format="json",
    )
    assert response.status_code == 201, response.json()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


@pytest.fixture
def alice():
    return register("alice", timezone="Europe/Paris")


@pytest.fixture
def bob():
    return register("bob")


@pytest.fixture
def ada():
    return User.objects.create_user("ada", password="pw-123456")


@pytest.fixture
def grace():
    return User.objects.create_user("grace", password="pw-123456")
