"""Polling with a deadline: the one way tests, benchmarks and drills wait for a condition."""

import time


def wait_for(condition, timeout=60.0, interval=0.05):
    """Call ``condition`` until it returns something truthy or ``timeout`` seconds pass; return
    its last value, so that ``assert wait_for(...)`` fails with what was seen last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()


def wait_until(condition, timeout, what, interval=0.2):
    """``wait_for`` that raises TimeoutError naming ``what`` when the condition never held."""
    result = wait_for(condition, timeout, interval)
    if not result:
        raise TimeoutError(f"{what}: not within {timeout}s")
    return result
