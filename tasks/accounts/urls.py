"""The account API, under /api/ (its browser pages are in tasks/accounts/web_urls.py)."""

from django.urls import path

from tasks.accounts import apis

urlpatterns = [
    path("auth/register/", apis.RegisterApi.as_view(), name="auth-register"),
    path("auth/token/", apis.TokenApi.as_view(), name="auth-token"),
    path("auth/password/", apis.PasswordApi.as_view(), name="auth-password"),
    path("auth/me/", apis.MeApi.as_view(), name="auth-me"),
]
