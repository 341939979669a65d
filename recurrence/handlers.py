"""Handlers of the recurring-task service (consumer ``recurrence``, group recurring-task-service).

``on_tasks_completed`` takes the completions fetched together (a few statements for all of them,
recurrence.services.create_next_occurrences); ``on_task_completed`` one, when the runtime re-runs
the events of a failed batch one by one.
"""

from recurrence.services import create_next_occurrence, create_next_occurrences


def _recurring(event):
    return bool(event["data"]["recurrence_rule"] and event["data"]["due_date"])


def on_task_completed(event):
    if _recurring(event):
        create_next_occurrence(event["data"], correlation_id=event["metadata"]["correlation_id"])


def on_tasks_completed(events):
    completions = [(event["data"], event["metadata"]["correlation_id"]) for event in events if _recurring(event)]
    if completions:
        create_next_occurrences(completions)
