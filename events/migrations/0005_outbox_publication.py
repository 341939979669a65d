"""A publication of the outbox table's inserts, read by Debezium when OUTBOX_PUBLISHER=debezium.

Made here, by the table's owner, so that the connector's database user needs only REPLICATION and
SELECT (PostgreSQL lets only a table's owner publish it). ``publish = 'insert'``: an outbox row is
an event when it is written; the relay's bookkeeping (sent_at, parking) and the purge's deletes
are not events, and never leave the server. A publication is a catalog entry: nothing reads or
keeps WAL for it until a replication slot subscribes (the connector's), so every database has it
and choosing the publisher needs no DDL. On a server without ``wal_level = logical`` PostgreSQL
creates it with a warning; the connector refuses to start there.
"""

from django.db import migrations

PUBLICATION = "todo_outbox"  # helm/todo-platform/files/debezium-outbox.yaml: publication.name


class Migration(migrations.Migration):
    dependencies = [("events", "0004_outbox_parking")]

    operations = [
        migrations.RunSQL(
            f"CREATE PUBLICATION {PUBLICATION} FOR TABLE events_outboxevent WITH (publish = 'insert')",
            f"DROP PUBLICATION IF EXISTS {PUBLICATION}",
        )
    ]
