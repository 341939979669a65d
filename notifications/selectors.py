from notifications.models import Notification


def notifications_of(user):
    # select_related: each notification's e-mail state is part of its payload.
    return Notification.objects.filter(user=user).select_related("email").order_by("-created_at", "-id")
