"""Account settings: a zone change keeps instants and the series' wall time (across DST), a new
address is confirmed again, a password change or reset rotates every credential, and the reset
door is rate-limited and never tells whether an address has an account."""

import json
import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from events.models import OutboxEvent
from notifications import mail
from notifications.models import OutgoingEmail
from recurrence.services import create_next_occurrence
from tasks.accounts import tokens
from tasks.accounts.services import user_change_timezone
from tasks.events import EventContext
from tasks.models import User
from tasks.services import task_complete, task_create
from testing.waits import wait_for
from tests.notifications.conftest import celery_worker, confirmed_user, smtp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)

API = EventContext(source="todo-api", correlation_id="settings-test")
RESET_LINK = re.compile(r"http://testserver(?P<path>/reset/[^/\s]+/[^/\s]+/)")
CONFIRM_LINK = re.compile(r"http://testserver(?P<path>/confirm-email/[^/\s]+/)")


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = "http://testserver"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


def complete_and_follow(task):
    """Complete ``task`` and let the recurring-task service create what follows it."""
    task_complete(task=task, context=API)
    row = OutboxEvent.objects.filter(event_type="task.completed", key=str(task.id)).get()
    return create_next_occurrence(json.loads(row.payload)["data"], correlation_id="settings-test")


# --- time zone ------------------------------------------------------------------------------


def test_a_zone_change_keeps_the_instant_of_a_one_off_task_and_its_reminder():
    owner = User.objects.create_user("olga", password="pw-123456", timezone="Europe/Paris")
    task = task_create(user=owner, context=API, title="Dentist", due_date=utc(2027, 3, 15, 14), remind_at=utc(2027, 3, 15, 13))

    assert user_change_timezone(user=owner, timezone="America/New_York", context=API) == []

    task.refresh_from_db()
    assert (task.due_date, task.remind_at, task.version) == (utc(2027, 3, 15, 14), utc(2027, 3, 15, 13), 1)
    assert User.objects.get(pk=owner.pk).timezone == "America/New_York"


def test_every_monday_0900_stays_0900_on_the_new_clock_across_both_dst_changes():
    # A weekly series that began on Monday 4 January 2027 at 09:00 in Paris (08:00Z, winter time).
    # The US changes to summer time on 14 March, Europe on 28 March: on 15 March Paris is 5 h ahead
    # of New York instead of 6.
    owner = User.objects.create_user("pierre", password="pw-123456", timezone="Europe/Paris")
    pending = task_create(
        user=owner, context=API, title="Standup", recurrence_rule="FREQ=WEEKLY;BYDAY=MO",
        series_start=utc(2027, 1, 4, 8), due_date=utc(2027, 3, 15, 8), remind_at=utc(2027, 3, 15, 7, 45),
    )

    [moved] = user_change_timezone(user=owner, timezone="America/New_York", context=API)

    # The open occurrence is 09:00 EDT on its Monday (13:00Z), its reminder still 15 minutes before.
    assert moved.id == pending.id
    assert (moved.due_date, moved.remind_at) == (utc(2027, 3, 15, 13), utc(2027, 3, 15, 12, 45))
    # The series is re-anchored at the same wall time: 09:00 EST on 4 January (14:00Z).
    assert moved.series_start == utc(2027, 1, 4, 14)
    # What follows is 09:00 on the New York clock, once a week, never the same Monday twice.
    following = complete_and_follow(moved)
    assert following.due_date == utc(2027, 3, 22, 13)
    assert following.remind_at == utc(2027, 3, 22, 12, 45)
    assert following.series_start == utc(2027, 1, 4, 14)

    # Back to Paris before Europe's change, then across it: 09:00 CET, then 09:00 CEST.
    [back] = user_change_timezone(user=owner, timezone="Europe/Paris", context=API)
    assert back.due_date == utc(2027, 3, 22, 8)
    assert back.series_start == utc(2027, 1, 4, 8)
    assert complete_and_follow(back).due_date == utc(2027, 3, 29, 7)


def test_a_series_keeps_its_count_and_the_start_of_a_new_series_moves_with_its_first_task():
    owner = User.objects.create_user("cho", password="pw-123456", timezone="Asia/Tokyo")
    # The first task of its series (series_start unset): 07:30 in Tokyo on 1 February 2027, three times.
    first = task_create(
        user=owner, context=API, title="Vitamins", recurrence_rule="FREQ=DAILY;COUNT=3", due_date=utc(2027, 1, 31, 22, 30)
    )
    second = complete_and_follow(first)
    assert second.due_date == utc(2027, 2, 1, 22, 30)

    user_change_timezone(user=owner, timezone="Europe/London", context=API)

    second.refresh_from_db()
    assert second.due_date == utc(2027, 2, 2, 7, 30)  # 07:30 in London on its day
    third = complete_and_follow(second)
    assert third.due_date == utc(2027, 2, 3, 7, 30)
    assert complete_and_follow(third) is None  # COUNT=3 counted across the move
    # The completed first task had its successor: nothing of it was rewritten.
    first.refresh_from_db()
    assert (first.version, first.series_start) == (2, None)


def test_a_completed_occurrence_not_followed_yet_is_followed_on_the_new_clock():
    owner = User.objects.create_user("ana", password="pw-123456", timezone="America/New_York")
    task = task_create(
        user=owner, context=API, title="Review", recurrence_rule="FREQ=WEEKLY;BYDAY=WE", due_date=utc(2027, 1, 6, 20)
    )
    task_complete(task=task, context=API)
    event = json.loads(OutboxEvent.objects.get(event_type="task.completed", key=str(task.id)).payload)

    user_change_timezone(user=owner, timezone="Asia/Kolkata", context=API)  # before the service ran

    following = create_next_occurrence(event["data"], correlation_id="late")
    assert following.due_date == utc(2027, 1, 13, 9, 30)  # 15:00 in Kolkata, like 15:00 in New York


def test_patch_me_changes_the_zone_and_rejects_an_unknown_one_with_400():
    owner = User.objects.create_user("raj", password="pw-123456", timezone="UTC")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue(owner)}")

    response = client.patch("/api/auth/me/", {"timezone": "Mars/Olympus"}, format="json")
    assert response.status_code == 400 and "timezone" in response.json()

    response = client.patch("/api/auth/me/", {"timezone": "Europe/Berlin"}, format="json")
    assert response.status_code == 200 and response.json()["timezone"] == "Europe/Berlin"


def test_the_settings_page_changes_the_zone():
    owner = User.objects.create_user("lena", password="pw-123456")
    client = signed_in(owner)
    assert client.get("/settings/").status_code == 200

    response = client.post("/settings/timezone/", {"timezone-timezone": "Europe/Vienna"}, follow=True)
    assert response.status_code == 200 and "Time zone saved" in response.content.decode()
    assert User.objects.get(pk=owner.pk).timezone == "Europe/Vienna"
    assert client.post("/settings/timezone/", {"timezone-timezone": "Nowhere/Else"}).status_code == 400


# --- e-mail ---------------------------------------------------------------------------------


def test_a_new_address_needs_the_password_and_is_confirmed_again_through_a_mailed_link(smtp):
    owner = confirmed_user("mia")
    client = signed_in(owner)

    wrong = client.post("/settings/email/", {"email-email": "mia@new.example", "email-current_password": "nope"})
    assert wrong.status_code == 400 and "current password is not correct" in wrong.content.decode()
    assert User.objects.get(pk=owner.pk).email == "mia@example.org"

    client.post("/settings/email/", {"email-email": "mia@new.example", "email-current_password": "pw-123456"})
    owner.refresh_from_db()
    assert (owner.email, owner.email_confirmed_at) == ("mia@new.example", None)

    mail.sweep()
    [message] = smtp.wait_for(1)
    assert message["To"] == "mia@new.example" and message["Subject"] == "Confirm your e-mail address"
    assert client.get(CONFIRM_LINK.search(message.get_payload())["path"]).status_code == 200
    owner.refresh_from_db()
    assert owner.email_confirmed_at is not None


def test_patch_me_changes_the_address_only_with_the_current_password():
    owner = confirmed_user("noor")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.issue(owner)}")

    response = client.patch("/api/auth/me/", {"email": "noor@new.example"}, format="json")
    assert response.status_code == 400 and "current_password" in response.json()
    response = client.patch("/api/auth/me/", {"email": "noor@new.example", "current_password": "pw-123456"}, format="json")
    assert response.status_code == 200 and response.json()["email"] == "noor@new.example"
    assert User.objects.get(pk=owner.pk).email_confirmed_at is None
    assert OutgoingEmail.objects.filter(user=owner, kind=OutgoingEmail.Kind.CONFIRMATION, to="noor@new.example").exists()


# --- password -------------------------------------------------------------------------------


def test_changing_the_password_on_the_settings_page_revokes_tokens_and_keeps_this_session():
    owner = User.objects.create_user("tom", password="pw-123456")
    tokens.issue(owner)
    old_tokens = list(AuthToken.objects.filter(user=owner).values_list("digest", flat=True))
    client = signed_in(owner)
    other_device = signed_in(owner)

    response = client.post(
        "/settings/password/", {"password-old_password": "pw-123456", "password-new_password": "a-new-long-passphrase"}
    )
    assert response.status_code == 302
    assert not AuthToken.objects.filter(digest__in=old_tokens).exists()
    assert client.get("/settings/").status_code == 200  # still signed in here
    assert other_device.get("/settings/").status_code == 302  # signed out there
    assert User.objects.get(pk=owner.pk).check_password("a-new-long-passphrase")


def test_a_password_reset_goes_through_the_mail_path_and_rotates_every_credential(smtp, celery_worker):
    celery_worker(EMAIL_PORT=smtp.port)
    owner = confirmed_user("zoe")
    tokens.issue(owner)
    assert AuthToken.objects.filter(user=owner).exists()
    old_session = signed_in(owner)

    response = Client().post("/password-reset/", {"email": "ZOE@example.org"})
    assert response.status_code == 302 and response["Location"] == "/password-reset/sent/"
    [message] = smtp.wait_for(1, timeout=60)  # sent by the celery worker, after commit
    assert message["To"] == "zoe@example.org" and message["Subject"] == "Reset your Todo password"
    email = wait_for(lambda: OutgoingEmail.objects.filter(user=owner, kind="password_reset", status="sent").first(), timeout=30)
    assert email is not None

    browser = Client()
    form_page = browser.get(RESET_LINK.search(message.get_payload())["path"], follow=True)
    assert form_page.status_code == 200 and "Choose a new password" in form_page.content.decode()
    done = browser.post(
        form_page.redirect_chain[-1][0], {"new_password1": "reset-long-passphrase", "new_password2": "reset-long-passphrase"}
    )
    assert done.status_code == 302 and done["Location"] == "/reset/done/"
    assert User.objects.get(pk=owner.pk).check_password("reset-long-passphrase")
    assert not AuthToken.objects.filter(user=owner).exists()
    assert old_session.get("/settings/").status_code == 302
    # The link works once.
    again = Client().get(RESET_LINK.search(message.get_payload())["path"], follow=True)
    assert "This link does not work" in again.content.decode()


def test_the_reset_answer_is_the_same_for_unknown_unconfirmed_and_confirmed_addresses():
    confirmed_user("kim")
    User.objects.create_user("lee", email="lee@example.org", password="pw-123456")  # not confirmed

    answers = [Client().post("/password-reset/", {"email": address}) for address in
               ("kim@example.org", "lee@example.org", "nobody@example.org")]

    assert {(answer.status_code, answer["Location"]) for answer in answers} == {(302, "/password-reset/sent/")}
    sent_page = Client().get("/password-reset/sent/").content.decode()
    assert "If an account has that confirmed address" in sent_page
    # Only the confirmed address is mailed: an unconfirmed one may belong to somebody else.
    assert list(OutgoingEmail.objects.filter(kind="password_reset").values_list("to", flat=True)) == ["kim@example.org"]


def test_reset_requests_beyond_the_rate_are_refused_with_429_per_address_asked_for_and_per_client(settings):
    settings.PASSWORD_RESET_RATE_PER_EMAIL = "2/h"
    settings.PASSWORD_RESET_RATE_PER_ADDRESS = "3/h"
    confirmed_user("eve")
    client = Client()

    answers = [client.post("/password-reset/", {"email": "eve@example.org"}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 3600
    assert OutgoingEmail.objects.filter(kind="password_reset").count() == 2
    # The client's third request was counted: a fourth, for any address, is refused too.
    assert client.post("/password-reset/", {"email": "someone@example.org"}).status_code == 429
