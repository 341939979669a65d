"""Events: the contract, the outbox, and the loops that move events between PostgreSQL and Kafka.

Layers, each importing only those below it:

* the contract: ``schemas`` (event schemas, field limits), ``topics`` (topic and group names),
  ``models`` (outbox and processed-event tables), ``outbox`` (``emit``/``emit_all``, the one way
  to publish), ``registry`` (the consumers), ``bulk`` (many rows in one statement, their values in
  one JSON parameter). These import no client library; every app imports them.
* ``core/``: the processing of a batch of messages, on plain in-memory messages (Kafka-free).
* ``transports/``: ``kafka/`` (the only code importing confluent_kafka) and ``dapr.py`` (the only
  code speaking to the sidecar).
* the loops over them: ``consumer`` (``run_consumer``), ``relay`` (``relay_outbox``), ``replay``
  (``replay_dlq``), with ``worker``/``worker_http``/``readiness`` for the processes that run them,
  and the Dapr routes (``views``, ``urls``).
"""
