"""What the database statements of a block did, measured on the real connection."""

from contextlib import contextmanager

from django.db import connection


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
