"""A local mail catcher: an SMTP server (aiosmtpd) that keeps what it receives, and a page to read it.

Development only (a line of the Procfile, so `make run` starts it; never in the image or the
chart): the reminder e-mails a newcomer's `make run` sends to the default ``EMAIL_HOST:EMAIL_PORT``
(127.0.0.1:1025) land here instead of being refused, and http://127.0.0.1:8025/ lists them. The
tests' SMTP server (tests/notifications/smtp_server.py) is the same recording server.

Nothing is stored on disk: the last ``keep`` messages live in memory until the process stops.
"""

import email
import email.policy
import html
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


class RecordingHandler:
    """aiosmtpd handler that keeps each received message (an ``email.message.EmailMessage``)."""

    def __init__(self, keep=None):
        self._messages = deque(maxlen=keep)
        self.received = threading.Condition()

    @property
    def messages(self):
        with self.received:
            return list(self._messages)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.received:
            self._messages.append(message)
            self.received.notify_all()
        return "250 OK"

    def wait_for(self, count, timeout=10):
        """The messages once there are ``count`` of them (or what there is after ``timeout`` s)."""
        with self.received:
            self.received.wait_for(lambda: len(self._messages) >= count, timeout=timeout)
            return list(self._messages)


class SMTPServer:
    """``with SMTPServer(port) as handler:`` an SMTP server on 127.0.0.1:port while the block runs."""

    def __init__(self, port, *, host="127.0.0.1", keep=None, handler=None):
        self.handler = handler or RecordingHandler(keep)
        self.controller = Controller(self.handler, hostname=host, port=port)

    def __enter__(self):
        self.controller.start()
        return self.handler

    def __exit__(self, *exc):
        self.controller.stop()


def body_text(message):
    """The plain-text body of a message (its text/plain part, else its first text part)."""
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def render_page(messages):
    """The page: the caught messages, newest first, each with its headers and text body."""
    items = []
    for message in reversed(messages):
        headers = "".join(
            f"<dt>{name}</dt><dd>{html.escape(str(message.get(name, '')))}</dd>" for name in ("From", "To", "Date")
        )
        items.append(
            f"<article><h2>{html.escape(str(message.get('Subject', '(no subject)')))}</h2>"
            f"<dl>{headers}</dl><pre>{html.escape(body_text(message))}</pre></article>"
        )
    listing = "".join(items) or "<p>No e-mail caught yet. This page reloads every 5 seconds.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="5"><title>Caught e-mails</title>'
        "<style>body{font:15px system-ui,sans-serif;max-width:50rem;margin:1rem auto;padding:0 1rem}"
        "article{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}"
        "dl{display:grid;grid-template-columns:4rem 1fr;margin:0}dt{color:#666}dd{margin:0}"
        "pre{white-space:pre-wrap}</style></head><body>"
        f"<h1>Caught e-mails ({len(messages)})</h1>{listing}</body></html>"
    )


class MailPage(ThreadingHTTPServer):
    """``GET /`` shows what ``handler`` caught; serve with ``serve_forever()``, stop with ``shutdown()``."""

    daemon_threads = True

    def __init__(self, address, handler):
        self.handler = handler
        super().__init__(address, _PageRequest)


class _PageRequest(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/":
            self.send_error(404)
            return
        body = render_page(self.server.handler.messages).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        """Quiet: the page reloads itself every few seconds."""
