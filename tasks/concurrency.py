"""Optimistic concurrency of task writes (CONTRACT.md section 7): a task's ``version`` is its ETag.

A client that read version 7 and writes with ``If-Match: "7"`` means "only if nobody changed it
since". The services decide it inside their row lock (``tasks.services._lock``), never by a read
before the write, so two writers holding the same version cannot both win: the second one finds
version 8 under the lock and gets ``VersionConflict``, which tasks.errors turns into a 412 whose
body is the current task. Without an expected version a write applies as before.

The tag is the version alone, so a weak tag (``W/"7"``, as a compressing proxy may rewrite ours)
names the same version and is accepted too. ``*`` asks only that the task exists.
"""

import re

from django.utils.cache import parse_etags
from rest_framework.exceptions import ValidationError

_TAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')


class VersionConflict(Exception):
    """The task is no longer at the version the writer expected; ``current`` is the task as it is."""

    def __init__(self, current, expected):
        self.current = current
        self.expected = expected
        super().__init__(
            f"The task was changed meanwhile: its current version is {current.version}, not {expected}."
        )


def etag(version):
    return f'"{version}"'


def check_version(task, expected_version):
    """Raise VersionConflict unless ``expected_version`` is None or the (locked) task's version."""
    if expected_version is not None and task.version != expected_version:
        raise VersionConflict(task, expected_version)


def expected_version(request):
    """The version an ``If-Match`` header asks for, or None (no header, or ``*``). 400 when malformed."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tags = parse_etags(header)
    if tags == ["*"]:
        return None
    match = _TAG.match(tags[0]) if len(tags) == 1 else None
    if match is None:
        raise ValidationError(
            {"If-Match": ['Give one entity tag, the task\'s ETag such as "3" (or * for any version).']}
        )
    return int(match.group(1))
