"""WebSocket routes."""

from django.urls import path

from tasks.realtime.consumers import SyncConsumer

websocket_urlpatterns = [
    path("ws/sync/", SyncConsumer.as_asgi()),
]
