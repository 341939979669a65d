"""The reminder pipeline and e-mail: the scheduler, the notification service, in-app
notifications and their push, the e-mail queue and its sender, address confirmation.

May import: events, tasks, tasks.realtime.
"""
