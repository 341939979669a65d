"""Reading and replaying dead letters (``python manage.py replay_dlq``).

A dead letter is the original message plus the runtime's ``dlq.*`` headers (CONTRACT.md section 4;
written by events.core.dead_letters). Replaying sends it back to its original topic with those
headers removed and a ``replay.count`` header counting the replays; a letter already replayed
``DLQ_REPLAY_CAP`` times is refused (its cause is clearly not fixed), and so is one cut to fit the
broker (``dlq.truncated``). The replayer reads as consumer group ``dlq-replay`` and commits after
the broker confirmed the re-sent messages, so running it again sends nothing twice.
"""

from dataclasses import dataclass

from django.conf import settings

from events.core import headers as names
from events.core.dead_letters import dlq_headers_stripped
from events.core.message import Message
from events.topics import DLQ_SUFFIX, group_name, topic_name
from events.transports.kafka.consumer import GroupReader
from events.transports.kafka.producer import send_confirmed

REPLAY_GROUP = "dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    """A letter read from a dead-letter topic (a core Message), described for people."""

    message: Message

    @property
    def original_topic(self):
        return self.message.header(names.DLQ_ORIGINAL_TOPIC)

    @property
    def replay_count(self):
        try:
            return int(self.message.header(names.REPLAY_COUNT, "0"))
        except ValueError:
            return 0

    def describe(self):
        header, message = self.message.header, self.message
        return (
            f"[{message.partition}]@{message.offset} from {self.original_topic or '?'}"
            f"[{header(names.DLQ_ORIGINAL_PARTITION, '?')}]@{header(names.DLQ_ORIGINAL_OFFSET, '?')} "
            f"event_id={header(names.EVENT_ID, '?')} {header(names.DLQ_ERROR_TYPE)}: {header(names.DLQ_ERROR_MESSAGE)} "
            f"(group {header(names.DLQ_CONSUMER_GROUP, '?')}, {header(names.DLQ_ATTEMPTS, '?')} attempt(s), "
            f"failed at {header(names.DLQ_FAILED_AT, '?')}, replayed {self.replay_count} time(s))"
        )

    def refusal(self):
        """Why this letter must not be replayed, or None."""
        if not self.original_topic:
            return f"no {names.DLQ_ORIGINAL_TOPIC} header"
        if truncated := self.message.header(names.DLQ_TRUNCATED):  # the cut bytes would only be dead-lettered again
            return f"not the whole message ({names.DLQ_TRUNCATED}: {truncated})"
        if self.replay_count >= settings.DLQ_REPLAY_CAP:
            return f"already replayed {self.replay_count} times (cap {settings.DLQ_REPLAY_CAP})"
        return None

    def replayed(self):
        """The message to send back: to its original topic, without dlq.* headers, counting this replay."""
        headers = [(k, v) for k, v in dlq_headers_stripped(self.message.headers) if k != names.REPLAY_COUNT]
        headers.append((names.REPLAY_COUNT, str(self.replay_count + 1)))
        return Message(topic=self.original_topic, key=self.message.key, value=self.message.value, headers=headers)


def dead_letter_topic_name(name):
    """The full name of a dead-letter topic given its base name or its main topic's base name."""
    return topic_name(name if name.endswith(DLQ_SUFFIX) else name + DLQ_SUFFIX)


def replay_dead_letters(name, *, limit=None, dry_run=False, timeout=30.0):
    """Replay (or in a dry run, only list) the dead letters the replay group has not seen yet.

    Returns ``[(DeadLetter, outcome)]`` with outcome ``"listed"``, ``"replayed"`` or
    ``"refused: <why>"``. Nothing is committed unless every replayed message was confirmed:
    running replay_dlq again then re-sends them (consumers are idempotent).
    """
    with GroupReader(dead_letter_topic_name(name), group_name(REPLAY_GROUP)) as reader:
        messages, next_offsets = reader.read_unseen(limit, timeout)
        letters = [DeadLetter(message) for message in messages]
        if dry_run:
            return [(letter, "listed") for letter in letters]
        results = []
        for letter in letters:
            refusal = letter.refusal()
            results.append((letter, "replayed" if refusal is None else f"refused: {refusal}"))
        send_confirmed([letter.replayed() for letter, outcome in results if outcome == "replayed"], timeout=timeout)
        reader.commit(next_offsets)
        return results
