"""The web app's pages: sign-up, sign-in, sign-out and the task-list shell."""

import json
import re

import pytest
from django.test import Client

from tasks.models import User

pytestmark = pytest.mark.django_db


def app_config(response):
    match = re.search(r'<script id="app-config" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(match.group(1))


def test_the_task_list_sends_a_visitor_who_is_not_signed_in_to_the_sign_in_page():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_signing_up_creates_the_user_in_their_zone_signs_them_in_and_shows_their_list():
    client = Client()
    response = client.post(
        "/signup/", {"username": "ada", "password": "a-long-passphrase", "email": "", "timezone": "Europe/Paris"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert User.objects.get(username="ada").timezone == "Europe/Paris"

    page = client.get("/")
    assert page.status_code == 200
    config = app_config(page)
    assert (config["username"], config["timezone"], config["syncCursor"]) == ("ada", "Europe/Paris", "0")
    assert "csrftoken" in page.cookies  # the page's API calls send it back as X-CSRFToken


def test_signing_up_with_a_taken_name_or_a_weak_password_shows_the_errors_and_creates_nobody():
    User.objects.create_user("ada", password="a-long-passphrase")
    response = Client().post("/signup/", {"username": "ada", "password": "123", "timezone": "UTC"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "username" in errors and "password" in errors
    assert User.objects.count() == 1


def test_signing_in_and_out_with_the_session():
    User.objects.create_user("ada", password="a-long-passphrase")
    client = Client()
    assert client.post("/login/", {"username": "ada", "password": "wrong"}).status_code == 200
    response = client.post("/login/", {"username": "ada", "password": "a-long-passphrase"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_the_page_starts_catching_up_after_the_latest_change_of_its_user():
    client = Client()
    client.post("/signup/", {"username": "ada", "password": "a-long-passphrase", "timezone": "UTC"})
    for title in ("One", "Two"):
        assert client.post("/api/tasks/", {"title": title}, content_type="application/json").status_code == 201
    cursor = app_config(client.get("/"))["syncCursor"]
    assert client.get(f"/api/sync/?since={cursor}").json()["changes"] == []
    assert len(client.get("/api/sync/").json()["changes"]) == 2
