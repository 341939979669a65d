"""The web app's task page at the root (the account pages are tasks/accounts/web_urls.py)."""

from django.urls import path

from tasks.web import views

urlpatterns = [
    path("", views.app, name="app"),
]
