"""WebSocket routes; the realtime sync endpoint joins here."""

websocket_urlpatterns = []
