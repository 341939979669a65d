"""The account pages of the web app: sign-up, sign-in, sign-out, settings and password reset."""

from django.contrib.auth import views as auth_views
from django.urls import path

from tasks.accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(template_name="tasks/login.html", redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/timezone/", views.change_timezone, name="settings-timezone"),
    path("settings/email/", views.change_email, name="settings-email"),
    path("settings/password/", views.change_password, name="settings-password"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]
