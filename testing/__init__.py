"""Support code of the tests, the benchmarks and the drills: one version of each helper.

Waits with a deadline (``waits``), free ports (``ports``), child processes of the project
(``processes``) and the processes of the running system (``system``), a private Kafka broker
(``kafka_broker``), PostgreSQL cluster (``postgres``) and Redis (``redis_server``), the stack of
the first two (``stack``), producing to and reading from Kafka (``kafka``), outbox rows and an
in-process relay (``outbox``), database statement counts (``db``), percentiles (``stats``) and factories of
users, tasks and events (``factories``).

It may import the project and third-party libraries, never ``tests`` and never pytest: the
fixtures stay in tests/ (tests/conftest.py and its plugins) and call this package for the work.
"""
