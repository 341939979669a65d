"""The account API (CONTRACT.md section 2, Auth): registration, sign-in tokens, password, the caller."""

from django.contrib.auth import authenticate, update_session_auth_hash
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks.accounts import services, tokens
from tasks.accounts.doors import PASSWORD_CHANGE
from tasks.accounts.serializers import (
    AccountUpdateSerializer,
    PasswordChangeSerializer,
    RegisterSerializer,
    TokenSerializer,
    UserSerializer,
)
from tasks.views import event_context, validated


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
    """POST signs in: a new token per sign-in (tasks/accounts/tokens.py). DELETE revokes the presented token,
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
