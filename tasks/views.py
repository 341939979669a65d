"""The REST API of CONTRACT.md section 2: thin views over tasks.selectors and tasks.services."""

import zoneinfo

from django.contrib.auth import authenticate, update_session_auth_hash
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from knox.models import AuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from events.schemas import TASK_OBJECT
from tasks import selectors, services, sync, tokens
from tasks.concurrency import etag, expected_version
from tasks.chat.agent import LLMError
from tasks.chat.interpreter import NotUnderstood
from tasks.chat.services import chat_respond, conversation_history, task_preview
from tasks.events import EventContext, task_object
from tasks.ratelimit import PASSWORD_CHANGE
from tasks.serializers import (
    AccountUpdateSerializer,
    ChatInputSerializer,
    PasswordChangeSerializer,
    RegisterSerializer,
    SyncQuerySerializer,
    TaskFilterSerializer,
    TaskInputSerializer,
    TaskParseSerializer,
    TokenSerializer,
    UserSerializer,
)

SOURCE = "todo-api"


class TaskPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def event_context(request):
    return EventContext(source=SOURCE, correlation_id=request.correlation_id)


def validated(serializer_class, request, data, **kwargs):
    """Validate ``data``, reading naive times in the user's time zone; 400 with field errors."""
    serializer = serializer_class(data=data, **kwargs)
    with timezone.override(zoneinfo.ZoneInfo(request.user.timezone)):
        serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def openapi_3_0(schema):
    """JSON Schema 2020-12 -> OpenAPI 3.0: ``"type": [T, "null"]`` becomes ``T`` + ``nullable``."""
    if isinstance(schema, list):
        return [openapi_3_0(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: openapi_3_0(value) for key, value in schema.items()}
    if isinstance(converted.get("type"), list):
        types = [name for name in converted["type"] if name != "null"]
        converted["type"] = types[0]
        converted["nullable"] = len(types) < len(schema["type"])
    return converted


# The task object is defined once, in events.schemas; the OpenAPI document reuses it.
TASK_SCHEMA = openapi_3_0(TASK_OBJECT)
TASK_RESPONSE = {200: TASK_SCHEMA}
# A write with If-Match: "<version>" that is no longer current changes nothing (tasks.concurrency).
IF_MATCH = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER,
    description='The task\'s ETag ("<version>") as last read: a stale one answers 412 with the current task.',
)
CONFLICT_RESPONSE = {412: TASK_SCHEMA}


def task_response(task, code=status.HTTP_200_OK):
    """A task answered with its version as ETag, the tag a later If-Match sends back."""
    return Response(task_object(task), status=code, headers={"ETag": etag(task.version)})


class TaskListApi(APIView):
    @extend_schema(
        operation_id="tasks_list",
        parameters=[
            TaskFilterSerializer,
            OpenApiParameter("page", int),
            OpenApiParameter("page_size", int, description="up to 200"),
        ],
        responses={
            200: {
                "type": "object",
                "title": "PaginatedTaskList",
                "properties": {
                    "count": {"type": "integer"},
                    "next": {"type": "string", "nullable": True},
                    "previous": {"type": "string", "nullable": True},
                    "results": {"type": "array", "items": TASK_SCHEMA},
                },
            }
        },
    )
    def get(self, request):
        params = request.query_params.dict()
        if "tag" in request.query_params:
            params["tag"] = request.query_params.getlist("tag")
        filters = validated(TaskFilterSerializer, request, params)
        tasks = selectors.task_list(user=request.user, tags=filters.pop("tag", ()), **filters)
        paginator = TaskPagination()
        page = paginator.paginate_queryset(tasks, request, view=self)
        return paginator.get_paginated_response([task_object(task) for task in page])

    @extend_schema(request=TaskInputSerializer, responses={201: TASK_SCHEMA})
    def post(self, request):
        fields = validated(TaskInputSerializer, request, request.data)
        task = services.task_create(user=request.user, context=event_context(request), **fields)
        return task_response(task, code=status.HTTP_201_CREATED)


class TaskParseApi(APIView):
    """Smart quick-add: what ``POST /api/tasks/`` would get from a typed text, read by the chat
    interpreter's task parser, with the phrases it read for the web app's preview chips."""

    @extend_schema(
        request=TaskParseSerializer,
        responses={
            200: {
                "type": "object",
                "title": "ParsedTask",
                "properties": {
                    "fields": {
                        "type": "object",
                        "description": "The task fields to create it with (times in UTC).",
                        "additionalProperties": True,
                    },
                    "spans": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "title": "ParsedSpan",
                            "properties": {
                                "field": {"type": "string"},
                                "start": {"type": "integer"},
                                "end": {"type": "integer"},
                                "text": {"type": "string"},
                                "label": {"type": "string", "description": "the value, times in the user's zone"},
                            },
                            "required": ["field", "start", "end", "text", "label"],
                        },
                    },
                },
                "required": ["fields", "spans"],
            }
        },
    )
    def post(self, request):
        data = validated(TaskParseSerializer, request, request.data)
        try:
            preview = task_preview(user=request.user, text=data["text"], ignore=data["ignore"])
        except NotUnderstood as error:
            raise ValidationError({error.field or "text": [str(error)]}) from None
        return Response(preview)


class TaskDetailApi(APIView):
    @extend_schema(responses=TASK_RESPONSE)
    def get(self, request, task_id):
        return task_response(selectors.task_get(user=request.user, task_id=task_id))

    @extend_schema(request=TaskInputSerializer, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def put(self, request, task_id):
        return self._update(request, task_id, partial=False)

    @extend_schema(
        request=TaskInputSerializer(partial=True), parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE}
    )
    def patch(self, request, task_id):
        return self._update(request, task_id, partial=True)

    def _update(self, request, task_id, *, partial):
        task = selectors.task_get(user=request.user, task_id=task_id)
        changes = validated(TaskInputSerializer, request, request.data, partial=partial)
        task = services.task_update(
            task=task, context=event_context(request), expected_version=expected_version(request), **changes
        )
        return task_response(task)

    @extend_schema(parameters=[IF_MATCH], responses={204: None, **CONFLICT_RESPONSE})
    def delete(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        services.task_delete(task=task, context=event_context(request), expected_version=expected_version(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TaskCompleteApi(APIView):
    @extend_schema(request=None, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        return task_response(
            services.task_complete(task=task, context=event_context(request), expected_version=expected_version(request))
        )


class TaskReopenApi(APIView):
    @extend_schema(request=None, parameters=[IF_MATCH], responses={**TASK_RESPONSE, **CONFLICT_RESPONSE})
    def post(self, request, task_id):
        task = selectors.task_get(user=request.user, task_id=task_id)
        return task_response(
            services.task_reopen(task=task, context=event_context(request), expected_version=expected_version(request))
        )


def user_data(user):
    return {"id": str(user.id), "username": user.username, "email": user.email, "timezone": user.timezone}


class RegisterApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RegisterSerializer,
        responses={201: inline_serializer("Registered", {"user": UserSerializer(), "token": serializers.CharField()})},
    )
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            user = services.user_register(**serializer.validated_data)
            token = tokens.issue(user)
        return Response({"user": user_data(user), "token": token}, status=status.HTTP_201_CREATED)


TOKEN_RESPONSE = inline_serializer("TokenResponse", {"token": serializers.CharField()})


class TokenApi(APIView):
    """POST signs in: a new token per sign-in (tasks/tokens.py). DELETE revokes the presented token,
    or with ``?all=true`` every token of the user (then a session may ask too)."""

    def perform_authentication(self, request):
        # Signing in needs no credentials: a stale token sent along must not turn it into a 401.
        if request.method != "POST":
            super().perform_authentication(request)

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(request=TokenSerializer, responses={200: TOKEN_RESPONSE})
    def post(self, request):
        serializer = TokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None:
            # DRF's convention for obtain-token: a 400 naming no field, not a 401 challenge.
            raise ValidationError({"non_field_errors": ["Unable to log in with the given username and password."]})
        return Response({"token": tokens.issue(user)})

    @extend_schema(
        parameters=[OpenApiParameter("all", bool, description="revoke every token of the user")],
        responses={204: None},
    )
    def delete(self, request):
        if request.query_params.get("all") == "true":
            AuthToken.objects.filter(user=request.user).delete()
        elif isinstance(request.auth, AuthToken):
            request.auth.delete()
        else:
            raise ValidationError({"non_field_errors": ["No token was presented: send it, or ask for ?all=true."]})
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordApi(APIView):
    """Change the password: every token of the user is revoked and their sockets close; the answer
    carries a new token. The session that asked, if any, stays signed in."""

    @extend_schema(request=PasswordChangeSerializer, responses={200: TOKEN_RESPONSE})
    def post(self, request):
        serializer = PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = services.user_change_password(user=request.user, **serializer.validated_data)
        if not isinstance(request.auth, AuthToken):
            update_session_auth_hash(request, request.user)
        return Response({"token": token})


class MeApi(APIView):
    @extend_schema(responses=UserSerializer)
    def get(self, request):
        return Response(user_data(request.user))

    @extend_schema(request=AccountUpdateSerializer, responses=UserSerializer)
    def patch(self, request):
        """Change the time zone (recurring series keep their wall time, see
        services.user_change_timezone) and/or the e-mail address (confirmed again; needs
        ``current_password``, counted as a sign-in guess like POST /api/auth/password/)."""
        data = validated(AccountUpdateSerializer, request, request.data)
        with transaction.atomic():  # both or neither
            if "email" in data:
                PASSWORD_CHANGE.check(request)  # before the password is hashed, like the middleware's doors
                services.user_change_email(
                    user=request.user, email=data["email"], current_password=data.get("current_password", "")
                )
            if "timezone" in data:
                services.user_change_timezone(user=request.user, timezone=data["timezone"], context=event_context(request))
        return Response(user_data(request.user))


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


CHAT_TOOL_CALL = {
    "type": "object",
    "title": "ChatToolCall",
    "description": "A tool call carried out for the message: its result, or the error that stopped it.",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "object", "additionalProperties": True},
        "result": {"type": "object", "additionalProperties": True},
        "error": {"type": "string"},
    },
    "required": ["id", "name", "arguments"],
}


class ChatConversationApi(APIView):
    """A conversation's messages, for a client to show it again (e.g. after a reload)."""

    @extend_schema(
        responses={
            200: {
                "type": "object",
                "title": "ChatConversation",
                "properties": {
                    "conversation_id": {"type": "string", "format": "uuid"},
                    "messages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "title": "ChatHistoryMessage",
                            "properties": {
                                "role": {"type": "string", "enum": ["user", "assistant"]},
                                "content": {"type": "string"},
                                "tool_calls": {"type": "array", "items": CHAT_TOOL_CALL},
                                "created_at": {"type": "string", "format": "date-time"},
                            },
                            "required": ["role", "content", "tool_calls", "created_at"],
                        },
                    },
                    "has_more": {"type": "boolean", "description": "older messages are left out"},
                },
                "required": ["conversation_id", "messages", "has_more"],
            }
        },
    )
    def get(self, request, conversation_id):
        return Response(conversation_history(user=request.user, conversation_id=conversation_id))


class ChatApi(APIView):
    """Talk to the assistant: it manages the caller's tasks with the MCP tools (see tasks/chat/)."""

    @extend_schema(
        request=ChatInputSerializer,
        responses={
            200: {
                "type": "object",
                "title": "ChatReply",
                "properties": {
                    "conversation_id": {"type": "string", "format": "uuid"},
                    "reply": {"type": "string"},
                    "tool_calls": {"type": "array", "items": CHAT_TOOL_CALL},
                },
                "required": ["conversation_id", "reply", "tool_calls"],
            },
            502: {
                "type": "object",
                "title": "ChatModelError",
                "properties": {"detail": {"type": "string"}, "tool_calls": {"type": "array", "items": CHAT_TOOL_CALL}},
            },
        },
    )
    def post(self, request):
        data = validated(ChatInputSerializer, request, request.data)
        try:
            turn = chat_respond(
                user=request.user,
                message=data["message"],
                conversation_id=data["conversation_id"],
                correlation_id=request.correlation_id,
            )
        except LLMError as error:
            return Response(
                {"detail": str(error), "tool_calls": error.tool_calls}, status=status.HTTP_502_BAD_GATEWAY
            )
        return Response({"conversation_id": str(turn.conversation.id), "reply": turn.reply, "tool_calls": turn.tool_calls})
