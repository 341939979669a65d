"""Realtime: the /ws/sync/ sockets, the users' channel-layer groups (push, close by credential),
the realtime bridge that forwards task changes from Kafka to them, and GET /api/sync/ for
clients to catch up from the domain's sync log.

May import: events, tasks.
"""
