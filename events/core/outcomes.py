"""The outcomes of one message, as ``EventProcessor.process`` reports them.

A dead letter is INVALID (the message's fault: not an event, or one the handler found forged) or
FAILED (the handler failed every attempt); only FAILED counts in the stop ratio.
"""

PROCESSED_OUTCOME, DUPLICATE, SKIP, INVALID, FAILED = "processed", "duplicate", "skipped", "invalid", "failed"
