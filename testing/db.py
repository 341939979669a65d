"""The database as the tests see it: its URL for child processes, what statements did, and the test
databases themselves (copies of one migrated template)."""

import hashlib
import inspect
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import django
from django.conf import settings
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import OperationalError, connection
from django.db.migrations.loader import MigrationLoader


def database_url():
    """DATABASE_URL of the database this process uses (under pytest: pytest-django's test database),
    for the processes it starts."""
    db = settings.DATABASES["default"]
    return (
        f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'])}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )


@contextmanager
def rows_deleted_per_statement():
    """``with rows_deleted_per_statement() as counts:`` each DELETE's row count, in order."""
    counts = []

    def measure(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("DELETE"):
            counts.append(context["cursor"].rowcount)
        return result

    with connection.execute_wrapper(measure):
        yield counts


# --- the test databases: copies of one migrated template ---------------------------------------------

def migration_fingerprint():
    """A hash of what ``migrate`` builds a database from: every migration file (the project's and
    the installed apps'), the project modules they import (e.g. events/periodic.py) and Django's
    version. Any change to one of them gives another template."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    modules = {sys.modules[type(migration).__module__] for migration in loader.disk_migrations.values()}
    imported = {inspect.getmodule(value) for module in modules for value in vars(module).values()}
    files = {Path(module.__file__).resolve() for module in modules}
    files |= {Path(module.__file__).resolve() for module in imported if _is_project_module(module)}
    digest = hashlib.sha256(django.get_version().encode())
    for path in sorted(files):
        digest.update(str(path.relative_to(path.anchor)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _is_project_module(module):
    path = getattr(module, "__file__", None)
    if not path:
        return False
    resolved = Path(path).resolve()
    return resolved.is_relative_to(settings.BASE_DIR) and not resolved.is_relative_to(Path(sys.prefix).resolve())


def create_test_database(rebuild=False):
    """Create this process's test database as a copy of the migrated template; returns the name of the
    database the connection used before (for ``destroy_test_database``).

    Migrating costs seconds per database; copying one (``CREATE DATABASE ... TEMPLATE``) a fraction of
    a second. The template is built once per ``migration_fingerprint()`` and kept for later runs (an
    advisory lock lets one xdist worker build it while the others wait); it is built under a temporary
    name and renamed when complete, so a run killed mid-migration never leaves a half-migrated
    template. ``rebuild``: build it afresh anyway (pytest's ``--create-db``).
    """
    creation = connection.creation
    original_name = connection.settings_dict["NAME"]
    test_name = creation._get_test_db_name()  # with pytest-django's xdist suffix, e.g. test_todo_gw0
    template = f"{original_name}_template_{migration_fingerprint()}"[-63:]
    with creation._nodb_cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [template])  # released when this closes
        if rebuild:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(template)}")
        if not _exists(cursor, template):
            _build_template(cursor, template)
        cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(test_name)}")  # left by a killed run
        cursor.execute(f"CREATE DATABASE {_quoted(test_name)} TEMPLATE {_quoted(template)}")
    _use_database(test_name)
    return original_name


def destroy_test_database(original_name):
    connection.creation.destroy_test_db(original_name, verbosity=0)


def _build_template(cursor, template):
    building = f"{template}_building"[-63:]
    cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(building)}")
    cursor.execute(f"CREATE DATABASE {_quoted(building)}")
    previous = connection.settings_dict["NAME"]
    _use_database(building)
    try:
        call_command("migrate", verbosity=0, interactive=False, run_syncdb=True)
    finally:
        _use_database(previous)  # closes the connection to it: a template must have none
    cursor.execute(f"ALTER DATABASE {_quoted(building)} RENAME TO {_quoted(template)}")
    _drop_other_templates(cursor, template)


def _drop_other_templates(cursor, template):
    """Templates of earlier migration files are never used again; one in use is left to a later run."""
    prefix = template.rsplit("_", 1)[0] + "_"
    cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) AND datname <> %s",
                   [prefix, template])
    for (name,) in cursor.fetchall():
        try:
            cursor.execute(f"DROP DATABASE IF EXISTS {_quoted(name)}")
        except OperationalError:
            pass


def _exists(cursor, name):
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    return cursor.fetchone() is not None


def _use_database(name):
    connection.close()
    settings.DATABASES[connection.alias]["NAME"] = name
    connection.settings_dict["NAME"] = name


def _quoted(name):
    return connection.ops.quote_name(name)


# --- emptying the database after a transactional test --------------------------------------------------

# Tables that are not empty after a flush because post_migrate fills them again (content types,
# permissions): {table: fingerprint of its rows then}, per process, recorded at the first flush.
_refilled = {}


def flush_written_tables():
    """What Django's ``flush`` after a transactional test leaves (every table empty but those the
    post_migrate signal fills, refilled), for a fraction of its cost.

    ``flush`` truncates every table and runs post_migrate, which writes the content types and
    permissions again: a few hundred milliseconds per test, most of them for tables the test never
    touched. Here only the tables holding rows are truncated, and post_migrate runs only when the
    tables it fills differ from what it left the last time (compared row by row, by a hash).
    """
    if not _refilled:
        call_command("flush", verbosity=0, interactive=False, reset_sequences=False)
        _record_refilled_tables()
        return
    with connection.cursor() as cursor:
        written = [table for table in _tables_with_rows(cursor)
                   if table not in _refilled or _fingerprint(cursor, table) != _refilled[table]]
        if written:
            cursor.execute(f"TRUNCATE {', '.join(map(_quoted, written))} CASCADE")
        if any(_fingerprint(cursor, table) != fingerprint for table, fingerprint in _refilled.items()):
            emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
            _record_refilled_tables()


def _record_refilled_tables():
    with connection.cursor() as cursor:
        _refilled.clear()
        _refilled.update({table: _fingerprint(cursor, table) for table in _tables_with_rows(cursor)})


def _tables_with_rows(cursor):
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    cursor.execute(" UNION ALL ".join(
        f"(SELECT %s WHERE EXISTS (SELECT FROM {_quoted(table)}))" for table in tables
    ), tables)
    return [table for (table,) in cursor.fetchall()]


def _fingerprint(cursor, table):
    cursor.execute(f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {_quoted(table)} t")
    return cursor.fetchone()[0]
