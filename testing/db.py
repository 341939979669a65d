"""The database as the tests see it: its URL for child processes, and what statements did."""

from contextlib import contextmanager
from urllib.parse import quote

from django.conf import settings
from django.db import connection


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
