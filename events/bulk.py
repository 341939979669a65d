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
from functools import lru_cache

from django.db import connection, connections


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
    model = type(objs[0])
    auto, fields = _columns_of(model)
    rows = [{field.column: field.pre_save(obj, add=True) for field in fields} for obj in objs]
    returning = auto is not None and not ignore_conflicts
    keys = _insert(model, rows, ignore_conflicts=ignore_conflicts, first=first, returning=returning)
    if returning:
        for obj, key in zip(objs, keys):
            setattr(obj, auto.attname, key)
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias
    return objs


def insert_rows(model, rows, *, ignore_conflicts=False):
    """Insert ``rows`` of ``model`` in ONE statement, without model instances: each row a dict of
    every concrete column but an auto-incremented key (by column name) to a JSON value
    (datetimes, dates and UUIDs are written as text), e.g. what a consumer builds from the events
    of a batch. No field's ``pre_save`` runs: an ``auto_now_add`` column is the caller's to fill.
    For many rows this costs a fraction of making an instance of each (the audit consumer's
    profile in the report of issue #14)."""
    if not rows:
        return
    _, fields = _columns_of(model)
    missing = {field.column for field in fields} - rows[0].keys()
    if missing:
        raise ValueError(f"rows of {model.__name__} without the column(s) {', '.join(sorted(missing))}")
    _insert(model, rows, ignore_conflicts=ignore_conflicts)


def _columns_of(model):
    """(the auto-incremented key field the database fills, or None; the fields a row holds)."""
    meta = model._meta
    auto = meta.auto_field if meta.auto_field is not None and meta.auto_field.db_returning else None
    return auto, [field for field in meta.concrete_fields if field is not auto]


def _insert(model, rows, *, ignore_conflicts=False, first=None, returning=False):
    """The one INSERT of bulk_insert and insert_rows; the keys of the rows inserted if ``returning``."""
    first_sql, first_params = first or (None, [])
    sql = _insert_sql(connection.alias, model, ignore_conflicts, first_sql, returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*first_params, json.dumps(rows, default=_json_value)])
        return [key for (key,) in cursor.fetchall()] if returning else None


@lru_cache
def _insert_sql(alias, model, ignore_conflicts, first_sql, returning):
    # Built once per model and kind of insert: asking each field its database type, per call, was
    # a fifth of the CPU of creating one task (tasks.services.task_create's profile, issue #14).
    meta = model._meta
    auto, fields = _columns_of(model)
    quote = connections[alias].ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    types = ", ".join(f"{quote(field.column)} {field.db_type(connections[alias])}" for field in fields)
    return (
        (f"WITH prelude AS MATERIALIZED ({first_sql}) " if first_sql else "")
        + f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS row({types})"
        + (" WHERE (SELECT count(*) FROM prelude) >= 0" if first_sql else "")
        + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
        + (f" RETURNING {quote(auto.column)}" if returning else "")
    )


def _json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value bulk_insert knows")
