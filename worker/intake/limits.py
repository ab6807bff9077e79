"""The intake's limits: Segment's, and the ones that keep a request to one enqueue round trip."""

from __future__ import annotations

from typing import Final

from producers import MAX_EVENT_BYTES

#: Largest event (its JSON, after the batch's context is merged in): the producer's and Segment's cap.
EVENT_BYTES: Final = MAX_EVENT_BYTES
#: Largest request body (after gzip is undone), and largest sum of a batch's merged events: Segment's batch cap.
BATCH_BYTES: Final = 500_000
#: Most events in one request. With ``BATCH_BYTES`` it keeps a request within one chunk of
#: ``AsyncProducer.enqueue_many`` (1,000 events, 1 MB with the stamps), hence one atomic script call.
BATCH_EVENTS: Final = 1_000
#: Seconds an SDK is told to wait (``Retry-After``) when Redis is unreachable or the backlog is full.
RETRY_AFTER_S: Final = 5
#: Seconds a client may take to send a request's body (a slower one gets 408).
BODY_TIMEOUT_S: Final = 10.0
#: Seconds a client may take to send a request's headers (``cio-fleet intake`` closes a slower connection).
HEADER_TIMEOUT_S: Final = 10.0
