"""The one translation of service errors into API errors, for the REST views and the chat tools.

Services raise Django's ValidationError for a domain rule (field errors, or a message naming no
field), Task.DoesNotExist when the task vanished under them (``_lock`` re-reads the row, and a
concurrent delete may have committed in between) and tasks.concurrency.VersionConflict when a
write expected another version. ``api_error`` turns them into DRF's exceptions (400 with field
errors, 404, 412 whose body is the current task and whose ETag is its version); ``exception_handler`` is DRF's EXCEPTION_HANDLER and applies it to
whatever a view raises; the chat executor uses ``api_error`` for the same reading of a service's
failure in its tool errors.

The handler also answers Django's SuspiciousOperation (too many query parameters, say) with the
400 Django itself would give it, instead of letting it escape the view.
"""

from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from tasks.concurrency import VersionConflict, etag
from tasks.events import task_object
from tasks.models import Task

NO_SUCH_TASK = "No such task."


class PreconditionFailed(exceptions.APIException):
    """412: the write's If-Match named a version the task is no longer at. The detail names the
    current version (what the chat tools tell); the REST body is the current task itself."""

    status_code = 412
    default_code = "precondition_failed"

    def __init__(self, conflict):
        self.current = conflict.current
        super().__init__(str(conflict))


def api_error(error):
    """The DRF APIException that ``error`` of a service means, or None when it is none of theirs."""
    if isinstance(error, DjangoValidationError):
        detail = error.message_dict if hasattr(error, "error_dict") else {"non_field_errors": error.messages}
        return exceptions.ValidationError(detail)
    if isinstance(error, Task.DoesNotExist):
        return exceptions.NotFound(NO_SUCH_TASK)
    if isinstance(error, VersionConflict):
        return PreconditionFailed(error)
    return None


def exception_handler(error, context):
    if isinstance(error, SuspiciousOperation):
        error = exceptions.ParseError(str(error))
    error = api_error(error) or error
    response = drf_exception_handler(error, context)
    if isinstance(error, PreconditionFailed):
        # The client offers the user this version next to their unsaved change (CONTRACT.md 7).
        response.data = task_object(error.current)
        response["ETag"] = etag(error.current.version)
    return response
