from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """event_type's plain btree index without the LIKE (varchar_pattern_ops) twin that db_index
    builds: nothing filters it by prefix. The new index is built first and without locking the audit
    table against the audit consumer's inserts (CONCURRENTLY, so outside a transaction); dropping the
    two old ones afterwards is quick."""

    atomic = False

    dependencies = [
        ('audit', '0001_initial'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='auditentry',
            index=models.Index(fields=['event_type'], name='audit_event_type'),
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='event_type',
            field=models.CharField(max_length=64),
        ),
    ]
