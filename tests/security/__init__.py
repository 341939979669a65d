"""The threat model, door by door: what a stranger and another user try, and what they get.

Each module is one door; a test names the attempt and asserts the answer (CONTRACT.md section 7).

| door | stranger / another user tries | module |
|---|---|---|
| sign-in (token, register, /login/, /admin/login/) | guessing passwords, bulk sign-ups, old or stolen tokens | test_auth_doors |
| REST | oversized, deep, mistyped or absurd input; races | test_hostile_input |
| REST, audit, notifications, sync, chat | another user's tasks, trail, notifications, changes | test_another_user (and tests/tasks/test_views.py) |
| MCP | no or revoked token, oversized or malformed JSON-RPC, another user's tasks | test_auth_doors, test_hostile_input, tests/tasks/chat/test_mcp_server.py |
| WebSocket | a session from another origin or none, a revoked credential, another user's pushes | test_websocket_origins, test_auth_doors, tests/tasks/realtime/test_consumers.py |
| /dapr/ | anonymous or wrong-token deliveries, hostile bodies, the web port | test_dapr_door |
| Kafka | forged events naming other users, junk of every shape | test_kafka_door, tests/events/test_consumer.py |
| Redis, Kafka, network (the Helm chart) | reaching a backing service without credentials or from outside | tests/helm/test_chart.py |
| settings, probes | a public fallback key, plain http, forged proxy headers, leaked exception text | test_settings, test_probes |
"""
