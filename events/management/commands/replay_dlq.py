from django.core.management.base import BaseCommand, CommandError

from events.replay import replay_dead_letters
from events.transports.kafka.admin import KafkaException


class Command(BaseCommand):
    help = (
        "Send the dead letters of <topic> (e.g. task-events.dlq) back to their original topic without the "
        "dlq.* headers, counting replays in a replay.count header and refusing letters past DLQ_REPLAY_CAP. "
        "Remembers its position (consumer group dlq-replay): running it again sends nothing twice. "
        "--dry-run only lists the letters not replayed yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("topic", help="dead-letter topic (task-events.dlq) or its main topic (task-events)")
        parser.add_argument("--limit", type=int, default=None, help="at most this many letters")
        parser.add_argument("--dry-run", action="store_true", help="list, send nothing, remember nothing")

    def handle(self, *args, topic, limit, dry_run, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            results = replay_dead_letters(topic, limit=limit, dry_run=dry_run)
        except (KafkaException, TimeoutError) as exc:
            raise CommandError(f"replay of {topic} failed, nothing was marked as replayed: {exc}") from exc
        for letter, outcome in results:
            self.stdout.write(f"{outcome}: {letter.describe()}")
        replayed = sum(outcome == "replayed" for _, outcome in results)
        refused = sum(outcome.startswith("refused") for _, outcome in results)
        if dry_run:
            self.stdout.write(f"{len(results)} dead letter(s) waiting (dry run: nothing sent)")
        else:
            self.stdout.write(f"{replayed} replayed, {refused} refused")
