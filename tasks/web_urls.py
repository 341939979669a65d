"""Routes of the web app (the API is under /api/, see tasks/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from tasks import account, web

urlpatterns = [
    path("", web.app, name="app"),
    path("signup/", web.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(template_name="tasks/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Account settings and password reset (tasks/account.py).
    path("settings/", account.settings_page, name="settings"),
    path("settings/timezone/", account.change_timezone, name="settings-timezone"),
    path("settings/email/", account.change_email, name="settings-email"),
    path("settings/password/", account.change_password, name="settings-password"),
    path("password-reset/", account.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", account.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", account.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", account.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
