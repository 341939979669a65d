"""The web app's task page: the single-page task list at ``/`` (the account pages are tasks/accounts/).

The task list itself is rendered by ``static/tasks/app.js`` from the REST API (with the session
and the CSRF header) and kept live over ``/ws/sync/``; these views only serve the shell.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render, resolve_url
from django.views.decorators.csrf import ensure_csrf_cookie

from tasks.chat.serializers import MESSAGE_MAX_LENGTH
from tasks.sync import latest_cursor

WEEKDAYS = [("MO", "Mon"), ("TU", "Tue"), ("WE", "Wed"), ("TH", "Thu"), ("FR", "Fri"), ("SA", "Sat"), ("SU", "Sun")]


@login_required
@ensure_csrf_cookie
def app(request):
    # Changes after this cursor are fetched by the page after it loaded the task list, so
    # nothing committed between rendering and connecting the socket is missed.
    app_config = {
        "userId": str(request.user.id),
        "username": request.user.username,
        "timezone": request.user.timezone,
        "syncCursor": latest_cursor(request.user),
        "loginUrl": resolve_url(settings.LOGIN_URL),
        # How long a quick-add text or a message to the assistant may be.
        "messageMaxLength": MESSAGE_MAX_LENGTH,
    }
    return render(request, "tasks/app.html", {"app_config": app_config, "weekdays": WEEKDAYS})
