from django.urls import path

from notifications import views

urlpatterns = [
    path("notifications/", views.NotificationListView.as_view(), name="notification-list"),
    path("notifications/<int:pk>/read/", views.NotificationReadView.as_view(), name="notification-read"),
    path("auth/confirm-email/", views.ConfirmEmailApi.as_view(), name="auth-confirm-email"),
]
