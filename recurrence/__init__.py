"""The recurring-task service: on task.completed, the next occurrence of a recurring series.

The rules themselves (RRULE validation and expansion) are the task domain's,
tasks/recurrence_rules.py, so that the domain never imports this package.

May import: events, tasks.
"""
