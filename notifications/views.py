from django.shortcuts import get_object_or_404, render
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from events.schemas import utc_timestamp
from notifications.confirmation import InvalidConfirmation, confirm_email
from notifications.models import OutgoingEmail
from notifications.selectors import notifications_of
from notifications.services import mark_read, notification_payload
from tasks.views import TaskPagination

EMAIL_STATUSES = [OutgoingEmail.NO_EMAIL, *OutgoingEmail.Status.values]


class NotificationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.UUIDField()
    title = serializers.CharField()
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    read = serializers.BooleanField()
    email_status = serializers.ChoiceField(choices=EMAIL_STATUSES)

    def to_representation(self, instance):
        return notification_payload(instance)


class NotificationListView(ListAPIView):
    """The caller's notifications, newest first, paginated like the task list."""

    serializer_class = NotificationSerializer
    pagination_class = TaskPagination

    def get_queryset(self):
        return notifications_of(self.request.user)


class NotificationReadView(APIView):
    """Mark one of the caller's notifications read (another user's id is a 404)."""

    serializer_class = NotificationSerializer

    def post(self, request, pk):
        notification = get_object_or_404(notifications_of(request.user), pk=pk)
        return Response(notification_payload(mark_read(notification)))


class ConfirmEmailSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=1000)


class ConfirmEmailApi(APIView):
    """Confirm an e-mail address with the token of its confirmation link (no login needed)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=ConfirmEmailSerializer,
        responses={200: inline_serializer("EmailConfirmed", {"email": serializers.EmailField(), "email_confirmed_at": serializers.DateTimeField()})},
    )
    def post(self, request):
        serializer = ConfirmEmailSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = confirm_email(serializer.validated_data["token"])
        except InvalidConfirmation as exc:
            raise ValidationError({"token": [str(exc)]}) from None
        return Response({"email": user.email, "email_confirmed_at": utc_timestamp(user.email_confirmed_at)})


def confirm_email_page(request, token):
    """The page the confirmation link opens (400 when the link is not accepted)."""
    try:
        user = confirm_email(token)
    except InvalidConfirmation as exc:
        return render(request, "notifications/confirm_email.html", {"error": str(exc)}, status=400)
    return render(request, "notifications/confirm_email.html", {"confirmed_email": user.email})
