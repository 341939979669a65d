"""The task tools' one definition: schemas, argument checks, and naming a task by its title."""

import pytest

from tasks.chat.tools import TOOL_NAMES, TOOLS, ToolError, openai_tools, resolve_task_reference, validate_arguments


def task(title, *, completed=False, task_id=None):
    return {"id": task_id or f"id-{title}-{completed}", "title": title, "completed": completed}


def test_the_five_tools_of_the_contract_are_defined_with_object_schemas():
    assert TOOL_NAMES == ["add_task", "list_tasks", "update_task", "complete_task", "delete_task"]
    for tool in TOOLS:
        assert tool["description"]
        assert tool["input_schema"]["type"] == "object"
        # OpenAI's API refuses tool schemas with a combinator at the top level.
        assert not {"oneOf", "anyOf", "allOf", "not"} & set(tool["input_schema"])


def test_the_openai_format_carries_the_same_names_descriptions_and_schemas():
    assert openai_tools() == [
        {"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]}}
        for t in TOOLS
    ]


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("add_task", {"title": "Buy milk", "due_date": "2025-12-20T18:00:00Z", "priority": 1, "tags": ["shopping"],
                      "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO", "remind_at": None}),
        ("list_tasks", {}),
        ("list_tasks", {"completed": False, "tag": ["work"], "search": "milk", "ordering": "-priority", "limit": 200}),
        ("update_task", {"task_title": "groceries", "completed": False}),
        ("update_task", {"task_id": "6f1c2a9e-4b7d-4c1e-9a8b-3d2e1f0a9b8c", "title": "New title"}),
        ("complete_task", {"task_title": "buy milk"}),
        ("delete_task", {"task_id": "6f1c2a9e-4b7d-4c1e-9a8b-3d2e1f0a9b8c"}),
    ],
)
def test_arguments_that_mirror_the_rest_fields_are_accepted(name, arguments):
    validate_arguments(name, arguments)


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("add_task", {}, "'title' is a required property"),
        ("add_task", {"title": "x" * 201}, "title"),
        ("add_task", {"title": "a", "priority": 0}, "priority"),
        ("add_task", {"title": "a", "colour": "red"}, "'colour' was unexpected"),
        ("list_tasks", {"ordering": "random"}, "ordering"),
        ("update_task", {"title": "renamed"}, "exactly one of task_id and task_title"),
        ("delete_task", {"task_id": "a", "task_title": "b"}, "exactly one of task_id and task_title"),
        ("complete_task", ["buy milk"], "must be a JSON object"),
        ("reopen_task", {"task_title": "x"}, "There is no tool 'reopen_task'"),
    ],
)
def test_bad_arguments_are_a_tool_error_that_says_what_is_wrong(name, arguments, message):
    with pytest.raises(ToolError, match=message.replace("(", r"\(")):
        validate_arguments(name, arguments)


def test_a_title_that_names_one_task_resolves_to_it_whatever_the_case_and_spacing():
    milk = task("Buy  Milk")
    assert resolve_task_reference("buy milk", [milk, task("Call mom")]) is milk


def test_a_partial_title_resolves_when_only_one_title_contains_it():
    dentist = task("Dentist appointment at 3pm")
    assert resolve_task_reference("dentist", [dentist, task("Buy milk")]) is dentist


def test_an_exact_title_wins_over_titles_that_merely_contain_it():
    exact = task("Milk")
    assert resolve_task_reference("milk", [task("Buy milk"), exact, task("Milk the cow")]) is exact


def test_the_preferred_state_decides_between_an_open_and_a_completed_task():
    done, still_open = task("Groceries", completed=True), task("Groceries")
    assert resolve_task_reference("groceries", [done, still_open], prefer_completed=False) is still_open
    assert resolve_task_reference("groceries", [done, still_open], prefer_completed=True) is done


def test_a_task_in_the_other_state_is_still_found_when_it_is_the_only_match():
    done = task("Groceries", completed=True)
    assert resolve_task_reference("groceries", [done], prefer_completed=False) is done


def test_a_match_only_in_the_description_does_not_name_a_task():
    # list_tasks(search=...) also finds descriptions; only titles name a task.
    with pytest.raises(ToolError, match="No task has a title matching 'milk'"):
        resolve_task_reference("milk", [{**task("Shopping"), "description": "milk, eggs"}])


def test_several_matching_tasks_are_an_error_that_lists_them_instead_of_a_guess():
    with pytest.raises(ToolError) as raised:
        resolve_task_reference("milk", [task("Buy milk", task_id="id-1"), task("Milk the cow", task_id="id-2")])
    assert "Several tasks match 'milk'" in str(raised.value)
    assert "'Buy milk' (id-1)" in str(raised.value) and "'Milk the cow' (id-2)" in str(raised.value)
