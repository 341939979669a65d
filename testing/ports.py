"""Free TCP ports on loopback, for the servers a test, benchmark or drill starts."""

import socket


def free_port():
    """A port nobody listens on right now (the kernel's pick), for a server about to bind it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
