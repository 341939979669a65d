"""The notification service's browser pages (its API is in notifications/urls.py, under /api/)."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("confirm-email/<str:token>/", views.confirm_email_page, name="confirm-email"),
]
