"""Input shape of the sync API."""

from rest_framework import serializers


class SyncQuerySerializer(serializers.Serializer):
    since = serializers.IntegerField(required=False, min_value=0, help_text="the cursor of an earlier answer")
