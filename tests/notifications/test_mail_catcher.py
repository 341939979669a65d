"""`make run`'s mail catcher: what Django's SMTP backend sends to it shows on its page."""

import os
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from django.core.mail import EmailMessage, get_connection

from testing.ports import free_port
from testing.processes import Process, manage
from testing.waits import wait_for


def page(port):
    try:
        with urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read().decode()
    except (URLError, OSError):
        return None


@pytest.mark.e2e  # starts a server process in its body
def test_an_email_sent_through_djangos_smtp_backend_shows_on_the_catchers_page(tmp_path):
    smtp_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EMAIL_PORT": str(smtp_port)}
    env["MAIL_CATCHER_HTTP_PORT"] = str(http_port)
    catcher = Process(manage("run_mail_catcher"), tmp_path / "mail.log", env).start()
    try:
        assert wait_for(lambda: page(http_port) and "No e-mail caught yet" in page(http_port), timeout=30), catcher.log()

        connection = get_connection("django.core.mail.backends.smtp.EmailBackend", host="127.0.0.1", port=smtp_port)
        EmailMessage(
            "Reminder: <Pay> the rent & call",
            "Your reminder is due.\nPay the rent.",
            "todo@localhost",
            ["ines@example.org"],
            connection=connection,
        ).send()

        shown = wait_for(lambda: (text := page(http_port)) and "Pay the rent." in text and text, timeout=10)
        assert shown, page(http_port)
        assert "Reminder: &lt;Pay&gt; the rent &amp; call" in shown  # escaped, not markup
        assert "ines@example.org" in shown and "Caught e-mails (1)" in shown
        assert f"http://127.0.0.1:{http_port}/" in catcher.log()
    finally:
        assert catcher.stop(timeout=10) == 0, catcher.log()
    assert page(http_port) is None
