import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from notifications.mail_catcher import MailPage, SMTPServer

# Enough for a day of trying things out; older ones drop off the page.
KEPT_MESSAGES = 500


class Command(BaseCommand):
    help = (
        "Development only: catch the e-mails sent to EMAIL_HOST:EMAIL_PORT (an SMTP server that "
        "delivers nowhere) and list them on http://127.0.0.1:MAIL_CATCHER_HTTP_PORT/ until SIGTERM or SIGINT."
    )

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        with SMTPServer(settings.EMAIL_PORT, host=settings.EMAIL_HOST, keep=KEPT_MESSAGES) as caught:
            page = MailPage(("127.0.0.1", settings.MAIL_CATCHER_HTTP_PORT), caught)
            threading.Thread(target=page.serve_forever, name="mail-page", daemon=True).start()
            self.stdout.write(
                f"catching e-mails sent to {settings.EMAIL_HOST}:{settings.EMAIL_PORT}; "
                f"read them on http://127.0.0.1:{settings.MAIL_CATCHER_HTTP_PORT}/"
            )
            try:
                stop.wait()
            finally:
                page.shutdown()
                page.server_close()
