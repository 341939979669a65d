from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination

from audit.selectors import audit_entries_for_user


class AuditPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class AuditFilterSerializer(serializers.Serializer):
    task_id = serializers.UUIDField(required=False)
    event_type = serializers.CharField(required=False, max_length=64)


class AuditEntrySerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    timestamp = serializers.DateTimeField(source="occurred_at")
    task_id = serializers.UUIDField()
    data = serializers.JSONField()
    metadata = serializers.JSONField()


@extend_schema(parameters=[AuditFilterSerializer])
class AuditTrailApi(ListAPIView):
    """The caller's audit trail: every event of their tasks, newest first."""

    serializer_class = AuditEntrySerializer
    pagination_class = AuditPagination

    def get_queryset(self):
        filters = AuditFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return audit_entries_for_user(self.request.user, **filters.validated_data)
