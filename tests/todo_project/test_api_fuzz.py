"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis), with a fixed budget.

Every operation of /api/schema/ gets FUZZ_EXAMPLES generated requests, valid and invalid
ones, sent as a signed-in user to the Django app in-process (WSGI) on the test database.
The checks: never a 5xx, and every documented response conforms to the schema (body and
content type). A failure prints the reproducing request (curl command).

A search of the whole surface takes a minute or more, and building the schema at import seconds:
`make test` runs it, `make test-fast` leaves the module out (Makefile FAST_TIER_LEAVES_OUT).
"""

import os

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tasks.accounts.tokens import issue
from tasks.models import User

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))

# Served by the app itself (drf-spectacular); fetching it needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def auth_headers(db):
    # As Django's test client does: a request must not close the connection holding the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    user = User.objects.create_user(username="fuzzer", password="fuzz-password-1")
    yield {"Authorization": f"Token {issue(user)}"}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_answers_every_generated_request_without_5xx_and_as_documented(case, auth_headers):
    case.call_and_validate(
        headers=auth_headers,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
