"""The chat API: talk to the assistant, read a conversation again, and the smart quick-add parser."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks.chat.agent import LLMError
from tasks.chat.interpreter import NotUnderstood
from tasks.chat.serializers import ChatInputSerializer, TaskParseSerializer
from tasks.chat.services import chat_respond, conversation_history, task_preview
from tasks.views import validated


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
