"""Input shapes of the account API. The rules of a user's fields live in the User model."""

from rest_framework import serializers

from tasks.serializers import StringField


class RegisterSerializer(serializers.Serializer):
    username = StringField(max_length=150)
    password = StringField(trim_whitespace=False, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    timezone = StringField(required=False, max_length=64, default="UTC")


class TokenSerializer(serializers.Serializer):
    username = StringField()
    password = StringField(trim_whitespace=False)


class PasswordChangeSerializer(serializers.Serializer):
    old_password = StringField(trim_whitespace=False)
    new_password = StringField(trim_whitespace=False)


class AccountUpdateSerializer(serializers.Serializer):
    """PATCH /api/auth/me/: any of these; a new e-mail needs the current password."""

    timezone = StringField(required=False, max_length=64)
    email = serializers.EmailField(required=False, allow_blank=True)
    current_password = StringField(required=False, trim_whitespace=False, write_only=True)


class UserSerializer(serializers.Serializer):
    id = serializers.CharField()
    username = serializers.CharField()
    email = serializers.CharField()
    timezone = serializers.CharField()
