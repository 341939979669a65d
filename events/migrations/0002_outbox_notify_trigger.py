"""Wake the relay on commit: a statement-level trigger NOTIFYs the `outbox` channel.

PostgreSQL delivers a NOTIFY only when its transaction commits (and never when it rolls back),
and folds identical notifications of one transaction into one, so a request that writes four
outbox rows wakes the relay once, right after its commit, at no extra round trip.
"""

from django.db import migrations

CHANNEL = "outbox"

CREATE = f"""
CREATE FUNCTION events_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_outbox_notify AFTER INSERT ON events_outboxevent
    FOR EACH STATEMENT EXECUTE FUNCTION events_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS events_outbox_notify ON events_outboxevent;
DROP FUNCTION IF EXISTS events_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("events", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
