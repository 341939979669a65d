"""Input shapes of the chat API and the quick-add parser."""

from rest_framework import serializers

from tasks.serializers import StringField

# A chat message or a quick-add text: a sentence or two, which also bounds the parser's work.
MESSAGE_MAX_LENGTH = 2000
# Preview chips a user may take back from one quick-add text.
MAX_IGNORED_RANGES = 50


class ChatInputSerializer(serializers.Serializer):
    message = StringField(max_length=MESSAGE_MAX_LENGTH)
    conversation_id = serializers.UUIDField(required=False, allow_null=True, default=None)


class TaskParseSerializer(serializers.Serializer):
    # Not trimmed: the spans of the answer are positions in the text exactly as the client has it.
    text = StringField(max_length=MESSAGE_MAX_LENGTH, trim_whitespace=False)
    ignore = serializers.ListField(
        child=serializers.ListField(
            child=serializers.IntegerField(min_value=0, max_value=MESSAGE_MAX_LENGTH), min_length=2, max_length=2
        ),
        required=False,
        default=list,
        max_length=MAX_IGNORED_RANGES,
        help_text="[start, end] ranges of text not to read (chips the user removed): they stay in the title",
    )

    def validate_ignore(self, ranges):
        if any(start >= end for start, end in ranges):
            raise serializers.ValidationError("Each range is [start, end] with start < end.")
        return [tuple(pair) for pair in ranges]
