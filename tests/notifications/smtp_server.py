"""A real SMTP server (aiosmtpd) for tests: it records every message it receives.

It is `make run`'s mail catcher (notifications/mail_catcher.py) without its page:
``with SMTPServer(port) as received:`` then ``received.messages``, ``received.wait_for(count)`` and
``received.port`` (for the EMAIL_PORT of worker processes). With ``stall=True`` it records a message
and then never answers until the server stops: the worst case for a sender, the message arrived
and the sender will never know.
"""

import asyncio

from notifications import mail_catcher


class StallingHandler(mail_catcher.RecordingHandler):
    def __init__(self):
        super().__init__()
        self.stopped = False

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        while not self.stopped:
            await asyncio.sleep(0.05)
        return answer


class SMTPServer(mail_catcher.SMTPServer):
    def __init__(self, port, stall=False):
        super().__init__(port, handler=StallingHandler() if stall else None)
        self.handler.port = port

    def __exit__(self, *exc):
        self.handler.stopped = True
        super().__exit__(*exc)
