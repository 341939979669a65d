"""The event core: what a consumer does with one batch of messages, known to no client library.

Here live the message type every transport hands in (``message.Message``: topic, partition,
offset, key, value, headers), the names of the headers the contract puts on messages
(``headers``), one backoff and the retry policy built on it (``retry``), and the steps of
processing a batch, each with one job: parse and validate (``parsing``), the idempotency record
(``idempotency``), the handler call with its time budget and Kafka coordinates (``handling``),
dead letters and their size budget (``dead_letters``), the stop ratio (``breaker``).
``processor.EventProcessor`` composes them behind the one interface both transports call,
``process(messages, done)``, reporting an ``outcomes`` value per message and counting ``metrics``.
``publishing`` is the other interface at the edge: what the outbox relay hands a publisher.

May import: Django (settings, the ORM, ``events.models``), prometheus_client, and the contract
modules beside it (``events.schemas``, ``events.topics``). Never a transport, the registry, the
loops or a client library (confluent_kafka, the Dapr sidecar): ``events/transports/`` sits on top
of this package, so every step runs on in-memory messages with nothing but PostgreSQL.
"""
