"""The test databases: each a copy of the template migrated for the current migration files, and
emptied after a transactional test as Django's flush would leave it, truncating only what was written."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tasks.models import Task, User
from testing.db import flush_written_tables, migration_fingerprint


def rows_per_table():
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return {table: count for table, count in counts.items() if count}


@pytest.mark.django_db
def test_the_test_database_has_every_migration_applied():
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


def test_the_template_changes_with_a_migration_file_and_the_modules_migrations_import(monkeypatch, settings, tmp_path):
    import events.periodic

    before = migration_fingerprint()
    copy = tmp_path / "periodic.py"
    copy.write_text(open(events.periodic.__file__).read() + "\n# changed\n")
    monkeypatch.setattr(events.periodic, "__file__", str(copy))
    settings.BASE_DIR = tmp_path  # the copy counts as the project's
    assert migration_fingerprint() != before


@pytest.mark.django_db(transaction=True)
def test_after_a_flush_only_what_post_migrate_writes_is_left_as_it_left_it():
    flush_written_tables()
    left = rows_per_table()
    assert set(left) == {ContentType._meta.db_table, Permission._meta.db_table}
    permissions = set(Permission.objects.values_list("codename", "content_type__model"))

    user = User.objects.create_user("ada")
    Task.objects.create(user=user, title="Water the plants")
    flush_written_tables()
    assert rows_per_table() == left

    Permission.objects.filter(codename="add_task").delete()  # a test that changes what post_migrate wrote
    flush_written_tables()
    assert set(Permission.objects.values_list("codename", "content_type__model")) == permissions
    assert rows_per_table() == left
