"""``GET /api/sync/``: how a client catches up with what its socket missed (tasks.sync keeps the log)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks import sync
from tasks.realtime.serializers import SyncQuerySerializer
from tasks.views import validated


class SyncApi(APIView):
    """The caller's task changes after a cursor, deletions included, for clients to catch up.

    Each change is the ``sync.task_changed`` event the WebSocket carries. Ask again with the
    answer's ``cursor`` while ``has_more`` is true; without ``since``, every change still kept is
    returned. A ``since`` older than the purged part of the log (tasks.sync) answers 410 Gone with
    a ``cursor`` to continue from once the client has reloaded its tasks.
    """

    @extend_schema(
        parameters=[SyncQuerySerializer],
        responses={
            200: inline_serializer(
                "SyncChanges",
                {
                    "changes": serializers.ListField(child=serializers.DictField()),
                    "cursor": serializers.CharField(),
                    "has_more": serializers.BooleanField(),
                },
            ),
            410: inline_serializer(
                "SyncCursorGone", {"detail": serializers.CharField(), "cursor": serializers.CharField()}
            ),
        },
    )
    def get(self, request):
        query = validated(SyncQuerySerializer, request, request.query_params.dict())
        try:
            changes, cursor, has_more = sync.changes_since(request.user, query.get("since"))
        except sync.StaleCursor as stale:
            return Response({"detail": str(stale), "cursor": stale.latest}, status=status.HTTP_410_GONE)
        return Response({"changes": changes, "cursor": cursor, "has_more": has_more})
