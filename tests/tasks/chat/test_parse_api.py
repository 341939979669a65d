"""POST /api/tasks/parse/: smart quick-add's preview, read by the chat interpreter's task parser."""

import pytest
from rest_framework.test import APIClient

from events.schemas import TITLE_MAX_LENGTH
from tasks.chat.serializers import MAX_IGNORED_RANGES, MESSAGE_MAX_LENGTH
from tasks.models import Task
from tests.tasks.conftest import register

pytestmark = pytest.mark.django_db

PHRASE = "Buy bread on Dec 16 2030 9am p1 #shopping"


def parse(client, text, status=200, **extra):
    response = client.post("/api/tasks/parse/", {"text": text, **extra}, format="json")
    assert response.status_code == status, response.content
    return response.json()


def test_a_phrase_becomes_the_fields_to_create_and_the_chips_in_the_users_zone(alice):
    preview = parse(alice, PHRASE)

    assert preview["fields"] == {"title": "Buy bread", "due_date": "2030-12-16T08:00:00Z", "priority": 1, "tags": ["shopping"]}
    assert preview["spans"] == [
        {"field": "due_date", "start": 10, "end": 24, "text": "on Dec 16 2030", "label": "Mon 16 Dec 09:00"},
        {"field": "due_date", "start": 25, "end": 28, "text": "9am", "label": "Mon 16 Dec 09:00"},
        {"field": "priority", "start": 29, "end": 31, "text": "p1", "label": "P1 Urgent"},
        {"field": "tags", "start": 32, "end": 41, "text": "#shopping", "label": "#shopping"},
    ]
    # The fields are what POST /api/tasks/ takes.
    created = alice.post("/api/tasks/", preview["fields"], format="json")
    assert created.status_code == 201
    task = Task.objects.get()
    assert (task.title, task.priority, task.tags, task.due_date.isoformat()) == (
        "Buy bread", 1, ["shopping"], "2030-12-16T08:00:00+00:00"
    )
    assert not Task.objects.exclude(pk=task.pk).exists()  # parsing itself creates nothing


def test_the_same_words_are_the_wall_time_of_each_users_zone():
    tokyo, los_angeles = register("kenji", "Asia/Tokyo"), register("lea", "America/Los_Angeles")
    assert parse(tokyo, "Call on Dec 16 2030 at 9am")["fields"]["due_date"] == "2030-12-16T00:00:00Z"
    assert parse(los_angeles, "Call on Dec 16 2030 at 9am")["fields"]["due_date"] == "2030-12-16T17:00:00Z"
    assert parse(los_angeles, "Call on Dec 16 2030 at 9am")["spans"][0]["label"] == "Mon 16 Dec 09:00"


def test_recurrence_and_reminder_chips(alice):
    preview = parse(alice, "Team meeting every Monday at 10am starting Jan 6 2031, remind me 1h before")
    assert preview["fields"] == {
        "title": "Team meeting", "due_date": "2031-01-06T09:00:00Z", "remind_at": "2031-01-06T08:00:00Z",
        "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO",
    }
    labels = {span["field"]: span["label"] for span in preview["spans"]}
    assert labels == {"recurrence_rule": "every Monday", "due_date": "Mon 6 Jan 10:00", "remind_at": "Mon 6 Jan 09:00"}


def test_a_removed_chip_is_sent_back_and_its_words_stay_in_the_title(alice):
    start = PHRASE.index("p1")
    preview = parse(alice, PHRASE, ignore=[[start, start + 2]])
    assert preview["fields"]["title"] == "Buy bread p1" and "priority" not in preview["fields"]
    assert [span["field"] for span in preview["spans"]] == ["due_date", "due_date", "tags"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": 42}, "text"),
        ({"text": ""}, "text"),
        ({"text": "x" * (MESSAGE_MAX_LENGTH + 1)}, "text"),
        ({"text": "Buy bread", "ignore": [[5, 2]]}, "ignore"),
        ({"text": "Buy bread", "ignore": [[1]]}, "ignore"),
        ({"text": "Buy bread", "ignore": "1-3"}, "ignore"),
        ({"text": "Buy bread", "ignore": [[-1, 3]]}, "ignore"),
        ({"text": "Buy bread", "ignore": [[0, 1]] * (MAX_IGNORED_RANGES + 1)}, "ignore"),
        # what the parser refuses names the field at fault
        ({"text": "tomorrow 9am"}, "title"),
        ({"text": "x" * (TITLE_MAX_LENGTH + 1)}, "title"),
        ({"text": "Meeting at 25:00"}, "due_date"),
        ({"text": "Call mom, remind me 1h before"}, "remind_at"),
        ({"text": "Water every 99999 days"}, "recurrence_rule"),
        ({"text": "Call in 99999999999999999999 days"}, "due_date"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(alice, body, field):
    response = alice.post("/api/tasks/parse/", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]


def test_the_longest_text_is_read_whole(alice):
    text = ("every monday at 9am p1 #x " * 80)[:MESSAGE_MAX_LENGTH]
    answer = alice.post("/api/tasks/parse/", {"text": text}, format="json")
    # One of each phrase is read; the repeats are words of a title far over its limit.
    assert (answer.status_code, list(answer.json())) == (400, ["title"])


def test_parsing_needs_authentication():
    assert APIClient().post("/api/tasks/parse/", {"text": PHRASE}, format="json").status_code == 401
