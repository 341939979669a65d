"""A real SMTP server (aiosmtpd) for tests: it records every message it receives.

It is `make run`'s mail catcher (notifications/mail_catcher.py) without its page:
``with SMTPServer(port) as received:`` then ``received.messages`` or ``received.wait_for(count)``.
"""

from notifications.mail_catcher import SMTPServer

__all__ = ["SMTPServer"]
