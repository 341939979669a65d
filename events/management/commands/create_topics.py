from django.core.management.base import BaseCommand, CommandError

from events.transports.kafka.admin import KafkaException, create_topics


class Command(BaseCommand):
    help = "Create the Kafka topics of the contract (idempotent): task-events, reminders, task-updates and their .dlq topics."

    def handle(self, *args, **options):
        try:
            outcome = create_topics()
        except KafkaException as exc:
            raise CommandError(f"could not create topics: {exc}. Is Kafka running (make infra)?") from exc
        for name, result in outcome.items():
            self.stdout.write(f"{name}: {result}")
