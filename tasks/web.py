"""The web app's pages: the single-page task list at ``/`` and the sign-up, sign-in and sign-out pages.

The task list itself is rendered by ``static/tasks/app.js`` from the REST API (with the session
and the CSRF header) and kept live over ``/ws/sync/``; these views only serve the shell.
"""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render, resolve_url
from django.views.decorators.csrf import ensure_csrf_cookie

from tasks import services
from tasks.forms import SignupForm
from tasks.serializers import MESSAGE_MAX_LENGTH
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


def signup(request):
    if request.user.is_authenticated:
        return redirect("app")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_register(**form.cleaned_data)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("app")
    return render(request, "tasks/signup.html", {"form": form})
