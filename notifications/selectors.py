from notifications.models import Notification


def notifications_of(user):
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")
