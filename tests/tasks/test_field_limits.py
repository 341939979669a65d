"""The task field limits are defined once (events.schemas) and every layer takes them from there:
the model, the API serializer, the MCP tool schemas, the chat interpreter and the published JSON
schemas. Each check reads the layer's own definition, not its behaviour on one sample."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from events import schemas
from events.schemas import (
    DESCRIPTION_MAX_LENGTH,
    HIGHEST_PRIORITY,
    LOWEST_PRIORITY,
    MAX_TAGS,
    RECURRENCE_RULE_MAX_LENGTH,
    TAG_MAX_LENGTH,
    TITLE_MAX_LENGTH,
)
from tasks.chat.interpreter import interpret
from tasks.chat.tools import TOOLS_BY_NAME, ToolError, validate_arguments
from tasks.models import Task
from tasks.serializers import TaskInputSerializer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"

THE_LIMITS = {
    "title": {"minLength": 1, "maxLength": TITLE_MAX_LENGTH},
    "description": {"maxLength": DESCRIPTION_MAX_LENGTH},
    "priority": {"minimum": HIGHEST_PRIORITY, "maximum": LOWEST_PRIORITY},
    "recurrence_rule": {"maxLength": RECURRENCE_RULE_MAX_LENGTH},
    "tags": {"maxItems": MAX_TAGS},
}


def test_the_contract_values_are_the_ones_of_contract_md_section_7():
    assert (TITLE_MAX_LENGTH, DESCRIPTION_MAX_LENGTH, MAX_TAGS, TAG_MAX_LENGTH) == (200, 10_000, 20, 50)


@pytest.mark.parametrize("field", sorted(THE_LIMITS))
def test_the_event_schema_of_a_task_carries_each_limit(field):
    for properties in (schemas.TASK_FIELDS, schemas.TASK_OBJECT["properties"]):
        assert THE_LIMITS[field].items() <= properties[field].items()
    assert schemas.TASK_FIELDS["tags"]["items"]["maxLength"] == TAG_MAX_LENGTH


@pytest.mark.parametrize("topic", ["task-events", "task-updates"])
def test_the_published_json_schemas_are_the_exported_ones_with_the_limits(topic):
    published = json.loads((DOCS / f"{topic}.schema.json").read_text())
    assert published == json.loads(json.dumps(schemas.json_schema(topic)))
    assert f'"maxLength": {DESCRIPTION_MAX_LENGTH}' in json.dumps(published)


def test_the_model_fields_take_the_limits():
    fields = {field.name: field for field in Task._meta.get_fields()}
    assert fields["title"].max_length == TITLE_MAX_LENGTH
    assert fields["recurrence_rule"].max_length == RECURRENCE_RULE_MAX_LENGTH
    assert fields["tags"].base_field.max_length == TAG_MAX_LENGTH
    assert DESCRIPTION_MAX_LENGTH in [getattr(v, "limit_value", None) for v in fields["description"].validators]


@pytest.mark.django_db
def test_the_model_refuses_a_task_over_each_limit(ada):
    for name, value in [
        ("title", "x" * (TITLE_MAX_LENGTH + 1)),
        ("description", "x" * (DESCRIPTION_MAX_LENGTH + 1)),
        ("tags", [f"t{number}" for number in range(MAX_TAGS + 1)]),
        ("tags", ["t" * (TAG_MAX_LENGTH + 1)]),
    ]:
        task = Task(user=ada, **{"title": "x", name: value})
        with pytest.raises(ValidationError) as refused:
            task.full_clean(exclude=["user"])
        assert name in refused.value.message_dict


def test_the_api_serializer_takes_the_limits():
    fields = TaskInputSerializer().fields
    assert fields["title"].max_length == TITLE_MAX_LENGTH
    assert fields["description"].max_length == DESCRIPTION_MAX_LENGTH
    assert fields["recurrence_rule"].max_length == RECURRENCE_RULE_MAX_LENGTH
    assert fields["tags"].max_length == MAX_TAGS and fields["tags"].child.max_length == TAG_MAX_LENGTH
    assert (fields["priority"].min_value, fields["priority"].max_value) == (HIGHEST_PRIORITY, LOWEST_PRIORITY)


@pytest.mark.parametrize("tool", ["add_task", "update_task"])
def test_the_mcp_tool_schemas_take_the_limits(tool):
    properties = TOOLS_BY_NAME[tool]["input_schema"]["properties"]
    for field, limits in THE_LIMITS.items():
        assert limits.items() <= properties[field].items(), field
    assert properties["tags"]["items"]["maxLength"] == TAG_MAX_LENGTH
    too_long = {"title": "x", "description": "x" * (DESCRIPTION_MAX_LENGTH + 1)}
    with pytest.raises(ToolError, match="description"):
        validate_arguments(tool, too_long)


def test_the_chat_interpreter_refuses_a_title_over_the_limit_and_takes_one_at_it():
    now = datetime(2026, 5, 5, 12, tzinfo=UTC)
    at_limit = interpret("add " + "x" * TITLE_MAX_LENGTH, timezone="UTC", now=now)
    over = interpret("add " + "x" * (TITLE_MAX_LENGTH + 1), timezone="UTC", now=now)
    assert at_limit.tool_calls[0]["arguments"]["title"] == "x" * TITLE_MAX_LENGTH
    assert not over.tool_calls and f"longer than {TITLE_MAX_LENGTH} characters" in over.reply
