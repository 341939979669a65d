"""Handlers of the recurring-task service (consumer ``recurrence``, group recurring-task-service)."""

from recurrence.services import create_next_occurrence


def on_task_completed(event):
    data = event["data"]
    if data["recurrence_rule"] and data["due_date"]:
        create_next_occurrence(data, correlation_id=event["metadata"]["correlation_id"])
