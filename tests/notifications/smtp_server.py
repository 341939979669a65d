"""A real SMTP server (aiosmtpd) for tests: it records every message it receives."""

import asyncio
import email
import threading

from aiosmtpd.controller import Controller


class RecordingHandler:
    """Records each message; with ``stall=True`` it then never answers (until the server stops),
    the worst case for a sender: the message arrived, the sender will never know."""

    def __init__(self, stall=False):
        self.messages = []
        self.received = threading.Condition()
        self.stall = stall
        self.stopped = False

    async def handle_DATA(self, server, session, envelope):
        with self.received:
            self.messages.append(email.message_from_bytes(envelope.content))
            self.received.notify_all()
        while self.stall and not self.stopped:
            await asyncio.sleep(0.05)
        return "250 OK"

    def wait_for(self, count, timeout=10):
        with self.received:
            self.received.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)


class SMTPServer:
    def __init__(self, port, stall=False):
        self.handler = RecordingHandler(stall=stall)
        self.handler.port = port  # for the EMAIL_PORT of worker processes
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def __enter__(self):
        self.controller.start()
        return self.handler

    def __exit__(self, *exc):
        self.handler.stopped = True
        self.controller.stop()
