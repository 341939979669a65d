import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from events.schemas import json_schema
from events.topics import REMINDERS, TASK_EVENTS, TASK_UPDATES

SCHEMA_DIR = Path(settings.BASE_DIR) / "docs" / "events"


def schema_files():
    """{path: JSON text} of the published event schemas, one per topic."""
    return {
        SCHEMA_DIR / f"{topic}.schema.json": json.dumps(json_schema(topic), indent=2) + "\n"
        for topic in (TASK_EVENTS, REMINDERS, TASK_UPDATES)
    }


class Command(BaseCommand):
    help = "Write the JSON Schema of each topic's events to docs/events/ (from events/schemas.py)."

    def handle(self, *args, **options):
        SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
        for path, text in schema_files().items():
            path.write_text(text)
            self.stdout.write(f"wrote {path.relative_to(settings.BASE_DIR)}")
