import pytest

from tasks.models import User


@pytest.fixture
def ada():
    return User.objects.create_user("ada", password="pw-123456")


@pytest.fixture
def bob():
    return User.objects.create_user("bob", password="pw-123456")
