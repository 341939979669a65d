from django.shortcuts import get_object_or_404
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications.selectors import notifications_of
from notifications.services import mark_read, notification_payload


class NotificationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.UUIDField()
    title = serializers.CharField()
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    read = serializers.BooleanField()

    def to_representation(self, instance):
        return notification_payload(instance)


class NotificationListView(ListAPIView):
    """The caller's notifications, newest first."""

    serializer_class = NotificationSerializer

    def get_queryset(self):
        return notifications_of(self.request.user)


class NotificationReadView(APIView):
    """Mark one of the caller's notifications read (another user's id is a 404)."""

    serializer_class = NotificationSerializer

    def post(self, request, pk):
        notification = get_object_or_404(notifications_of(request.user), pk=pk)
        return Response(notification_payload(mark_read(notification)))
