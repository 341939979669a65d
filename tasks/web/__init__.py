"""The web app's task page (``/``), and the templates and static files every page shares
(base, auth_page, message_page; app.js, app.css). The static namespace is ``tasks/``, as it was
before the split, so that the addresses browsers load stay the same.

May import: events, tasks, tasks.chat.
"""
