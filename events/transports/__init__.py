"""The transports: the only code that knows a client library or the Dapr sidecar.

``kafka/`` speaks to the brokers through confluent_kafka (its one client configuration, producers,
the consumer poll loop, dead-letter writers, admin), ``dapr.py`` to the Dapr sidecar over HTTP
(publishing, dead letters, and the messages Dapr delivers). Both turn what their client hands
them into the core's plain ``events.core.message.Message`` and give the core's writers and
publishers what they need, nothing more.

May import: ``events.core``, the contract modules (``events.schemas``, ``events.topics``,
``events.models``), ``events.registry``, Django settings and the client libraries. Never the
loops that use them (``events.consumer``, ``events.relay``, ``events.replay``) nor any app.
"""
