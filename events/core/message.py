"""The plain message every transport hands to the core, and the core hands back to dead letters."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Message:
    """One message of a topic, as any transport delivers it.

    ``topic`` is the full (prefixed) name. ``key`` and ``value`` are bytes or str (or None: a
    tombstone has no value); ``headers`` a list of (name, bytes or str) pairs. A transport that
    does not know a message's partition or offset (Dapr does not always pass them on) gives -1.
    """

    topic: str
    value: bytes | str | None
    key: bytes | str | None = None
    headers: list = field(default_factory=list)
    partition: int = -1
    offset: int = -1
    timestamp: int | None = None  # milliseconds since the epoch, when the transport knows it

    def coordinates(self):
        """``topic[partition]@offset``, how the logs name a message."""
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def header(self, name, default=""):
        """The text of header ``name`` (the first of that name), else ``default``."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
        return default
