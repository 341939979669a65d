"""Statements compiled once, run with other ids: building and compiling a queryset per round cost
the relay more than running it (py-spy)."""

from events.models import id_array

# The ids the relay's statements are compiled with; their array parameter is then replaced by the
# real ids' (no outbox row has a negative id).
PLACEHOLDER_IDS = (-1,)


def with_ids(params, ids, replacements=None):
    """Compiled ``params`` with the PLACEHOLDER_IDS array replaced by that of ``ids``, and any other
    placeholder value (a key of ``replacements``) by its replacement."""
    replacements = {id_array(PLACEHOLDER_IDS): id_array(ids), **(replacements or {})}
    return [replacements.get(param, param) for param in params]

