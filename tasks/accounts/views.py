"""The account pages: sign-up (``/signup/``), settings (``/settings/``) and password reset by
e-mail (``/password-reset/``); sign-in and sign-out are Django's views (tasks/accounts/web_urls.py).

Every change goes through tasks.accounts.services, the same as ``PATCH /api/auth/me/`` and
``POST /api/auth/password/``: a zone change re-anchors recurring series, a new address is
confirmed again, a new password revokes every token and closes every socket.

Password reset is Django's views (signed, single-use tokens of ``default_token_generator``:
a new password, or a sign-in, invalidates the link; it expires after PASSWORD_RESET_TIMEOUT)
with one form that sends through the project's mail path (notifications.mail: after commit,
at most once, header-safe, within the owner's hourly cap) instead of Django's direct send. The
answer is the same page whether or not an account has that address, and a link is mailed only
to a confirmed address: an unconfirmed one may be a typo that belongs to somebody else.
The reset door is rate-limited like the sign-in doors (tasks.accounts.doors.PASSWORD_RESET).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_POST

from notifications.mail import queue_email
from notifications.models import OutgoingEmail
from tasks.accounts import services
from tasks.accounts.forms import EmailForm, PasswordForm, SignupForm, TimezoneForm
from tasks.views import event_context


def signup(request):
    if request.user.is_authenticated:
        return redirect("app")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_register(**form.cleaned_data)
        except ValidationError as exc:
            for field, field_messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, field_messages)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("app")
    return render(request, "tasks/signup.html", {"form": form})


FORMS = {"timezone": TimezoneForm, "email": EmailForm, "password": PasswordForm}


def _settings_page(request, status=200, **bound):
    """The page with its three forms; ``bound`` holds the one that was posted and failed."""
    user = request.user
    initial = {"timezone": {"timezone": user.timezone}, "email": {"email": user.email}, "password": {}}
    context = {
        f"{name}_form": bound.get(name) or form_class(initial=initial[name], prefix=name)
        for name, form_class in FORMS.items()
    }
    return render(request, "tasks/settings.html", context, status=status)


def _apply(request, name, change, success):
    """Validate the posted form ``name``, run ``change(cleaned_data)``; errors go back to its fields."""
    form = FORMS[name](request.POST, prefix=name)
    if form.is_valid():
        try:
            change(form.cleaned_data)
        except ValidationError as exc:
            for field, field_messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, field_messages)
        else:
            messages.success(request, success)
            return redirect("settings")
    return _settings_page(request, status=400, **{name: form})


@login_required
def settings_page(request):
    return _settings_page(request)


@login_required
@require_POST
def change_timezone(request):
    def change(data):
        services.user_change_timezone(user=request.user, timezone=data["timezone"], context=event_context(request))

    return _apply(request, "timezone", change, "Time zone saved: your tasks are shown on the new clock.")


@login_required
@require_POST
def change_email(request):
    def change(data):
        services.user_change_email(user=request.user, email=data["email"], current_password=data["current_password"])

    message = "E-mail address saved. Open the link we sent to it to receive reminders there."
    return _apply(request, "email", change, message)


@login_required
@require_POST
def change_password(request):
    def change(data):
        services.user_change_password(user=request.user, **data)
        update_session_auth_hash(request, request.user)  # this session stays signed in, the others end

    return _apply(request, "password", change, "Password changed. Your other sessions and API tokens were signed out.")


class MailedPasswordResetForm(PasswordResetForm):
    """Django's reset form, sending through notifications.mail and only to confirmed addresses."""

    def get_users(self, email):
        return (user for user in super().get_users(email) if user.email_confirmed_at is not None)

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name=None):
        user = context["user"]
        link = settings.SITE_URL + reverse(
            "password_reset_confirm", kwargs={"uidb64": context["uid"], "token": context["token"]}
        )
        minutes = settings.PASSWORD_RESET_TIMEOUT // 60
        with transaction.atomic():
            queue_email(
                user=user,
                kind=OutgoingEmail.Kind.PASSWORD_RESET,
                subject="Reset your Todo password",
                body=(
                    f"Hello {user.username},\n\n"
                    "someone asked to reset the password of your Todo account. To choose a new one, open:\n\n"
                    f"{link}\n\n"
                    f"The link works once and for {minutes} minutes. If it was not you, ignore this e-mail: "
                    "your password stays as it is."
                ),
            )


class PasswordResetView(auth_views.PasswordResetView):
    form_class = MailedPasswordResetForm
    template_name = "tasks/password_reset.html"
    success_url = reverse_lazy("password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "tasks/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Sets the new password with Django's SetPasswordForm: ``User.save`` then revokes every token
    and closes every socket of the user (tasks.accounts.tokens), as any password change does."""

    template_name = "tasks/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "tasks/password_reset_complete.html"
