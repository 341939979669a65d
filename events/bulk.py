"""Inserting many rows of a model in ONE statement whose values travel as ONE JSON parameter.

Django's bulk_create on PostgreSQL sends an array per column (INSERT ... SELECT UNNEST(...)),
and psycopg's client-side binding quotes every element of those arrays in Python, escaping each
quote character of each string with a regular expression: for rows of JSON payloads that cost
more than everything else the consumers do (the profiles in the report of issue #14). Here the
rows are one JSON document, encoded at C speed, that PostgreSQL unpacks with jsonb_to_recordset
into the columns' own types (JSON arrays into array columns, objects into jsonb).
"""

import json
import uuid
from datetime import date, datetime

from django.db import connection


def bulk_insert(objs, *, ignore_conflicts=False, first=None):
    """Insert the unsaved model instances ``objs`` (of one model) as ``bulk_create`` does: fields'
    ``pre_save`` applied (auto_now), an auto-incremented primary key set on each object from the
    database (in their order, as with bulk_create), conflicts an error unless ``ignore_conflicts``
    (then, as with bulk_create, no key is set on objects that were not inserted). Returns ``objs``.

    ``first``: ``(sql, params)`` of a SELECT that runs once, in the same statement, before the first
    row is inserted (it is the InitPlan of the rows' filter): e.g. taking locks that the rows' ids
    must be drawn under."""
    if not objs:
        return objs
    meta = type(objs[0])._meta
    auto = meta.auto_field if meta.auto_field is not None and meta.auto_field.db_returning else None
    fields = [field for field in meta.concrete_fields if field is not auto]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    types = ", ".join(f"{quote(field.column)} {field.db_type(connection)}" for field in fields)
    rows = [{field.column: field.pre_save(obj, add=True) for field in fields} for obj in objs]
    first_sql, first_params = first or (None, [])
    sql = (
        (f"WITH prelude AS MATERIALIZED ({first_sql}) " if first_sql else "")
        + f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS row({types})"
        + (" WHERE (SELECT count(*) FROM prelude) >= 0" if first_sql else "")
        + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
        + (f" RETURNING {quote(auto.column)}" if auto is not None and not ignore_conflicts else "")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*first_params, json.dumps(rows, default=_json_value)])
        if auto is not None and not ignore_conflicts:
            for obj, (key,) in zip(objs, cursor.fetchall()):
                setattr(obj, auto.attname, key)
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias
    return objs


def _json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value bulk_insert knows")
