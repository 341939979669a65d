"""The task domain: tasks, their users, the events a change emits, and the sync log of changes.

What lives here (the modules at this level): the models (User, Task, the sync log TaskChange),
the only code that changes a task (services), its queries (selectors), the REST API of tasks
(serializers, views, urls), the events a change emits (events), optimistic concurrency, the one
translation of service errors, the reminder rate cap (ratelimit), the sync log (sync) and the
recurrence rules (recurrence_rules). Its parts are nested apps: tasks/accounts, tasks/chat,
tasks/realtime, tasks/web.

Imports run one way, downwards, through these layers (each package's docstring names what it
may import; tests/tasks/test_layering.py checks every import against them):

    events                  the event core: no app at all
    tasks                   the task domain
    recurrence              the recurring-task service           } react to the domain; neither
    tasks.realtime          sockets, push, the bridge, catch-up  } imports the other
    notifications           reminders, notifications and e-mail: pushes through tasks.realtime
    audit                   the audit trail (its admin shows notifications)
    tasks.accounts          registration, sign-in, tokens, settings: mails through notifications
    tasks.chat              the assistant and MCP: acts through the domain, signs MCP in by accounts
    tasks.web               the task page: the top

May import: events.
"""
