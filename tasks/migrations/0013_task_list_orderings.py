from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """The list's orderings with their tie-breaking id (tasks.selectors.ORDERINGS) and the completed
    filter, built without locking the table against writes (CONCURRENTLY, so outside a transaction)."""

    atomic = False

    dependencies = [
        ('tasks', '0012_purge_expired_tokens'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(fields=['user', '-created_at', 'id'], include=['completed'], name='task_user_newest'),
        ),
        AddIndexConcurrently(
            model_name='task',
            index=models.Index(fields=['user', 'due_date', 'id'], include=['completed'], name='task_user_due_first'),
        ),
        RemoveIndexConcurrently(model_name='task', name='task_user_created'),
        RemoveIndexConcurrently(model_name='task', name='task_user_due'),
    ]
