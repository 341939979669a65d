"""The local HTTP servers of the test doubles (tests/events/dapr_helpers.py, tests/tasks/chat/scripted_llm.py):
served on a thread of the test process, stopped at the end of the test."""

import threading

# ``shutdown()`` returns once ``serve_forever`` next looks at its stop flag, which it does once per
# poll interval: the standard library's 0.5 s would add up to half a second to every test's teardown.
SHUTDOWN_POLL_SECONDS = 0.02


def serve_in_background(server):
    """Serve ``server`` (a socketserver) on a daemon thread; returns the thread for ``stop``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                              name=f"{type(server).__name__}:{server.server_address[1]}", daemon=True)
    thread.start()
    return thread


def stop(server, thread):
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
