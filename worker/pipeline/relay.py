"""The relay: moves kicks from the events Redis to a broker of their own (``CIO_BROKER_URL``).

Producers kick a partition inside their enqueue script: they set its lease ``kicked`` and push a ready-made drain
task message on the ``{prefix}.drain`` list of the events Redis, atomically, without Celery. When the broker is that
Redis, the list is Celery's queue. When it is not (a standalone Redis, RabbitMQ), the list holds the kicks waiting
to be published, and every worker process runs this relay: a thread that waits on the list (``BRPOP``, so a kick is
published within milliseconds) and publishes each kick's drain task to the broker.

No kick is lost: a publish that fails puts the message back at the end the relay takes from, and the relay tries
again after a pause (growing to ``MAX_PAUSE_S``) while its lease stays ``kicked``, so nobody queues a second task.
A relay killed between taking a kick and publishing it leaves a ``kicked`` lease whose task is in neither the list
nor the broker: the sweeper kicks it again after ``KICK_GRACE_MS`` (``worker.broker``, ``worker.store.kicks``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import redis

from worker.broker import drain_target
from worker.store.replies import string

log = logging.getLogger("cio_fleet.relay")

Publish = Callable[[str, int], None]

#: How long one ``BRPOP`` waits before the loop looks at its stop flag again.
BLOCK_S: Final = 1
#: The pause after a failure doubles from ``MIN_PAUSE_S`` up to this.
MIN_PAUSE_S: Final = 0.2
MAX_PAUSE_S: Final = 5.0


class Relay:
    """A daemon thread that publishes the kicks waiting in ``inbox`` (a list of the events Redis) to the broker."""

    def __init__(self, client: redis.Redis, inbox: str, publish: Publish) -> None:
        self.client = client
        self.inbox = inbox
        self.publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cio-fleet-relay", daemon=True)
        #: Called after every round, failed or not (the health check's beat: the loop is alive).
        self.on_round: Callable[[], None] = lambda: None

    def start(self) -> None:
        """Start relaying in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the kick in hand (within ``BLOCK_S`` when idle)."""
        self._stop.set()
        self._thread.join(timeout=BLOCK_S + MAX_PAUSE_S + 1)

    def relay_once(self) -> int:
        """Wait up to ``BLOCK_S`` for one kick and publish it; returns how many were published (0 or 1).

        Raises:
            Exception: the publish failed (the kick is back in the list) or Redis did not answer.
        """
        popped = self.client.brpop([self.inbox], timeout=BLOCK_S)
        if popped is None:
            return 0
        raw = string(popped[1])
        target = drain_target(raw)
        if target is None:
            log.warning("not a drain task in the kick list; dropped", extra={"queue": self.inbox})
            return 0
        try:
            self.publish(*target)
        except Exception:
            # Back where the relay takes from: it is the next one tried, and its lease stays 'kicked' meanwhile.
            self.client.rpush(self.inbox, raw)
            raise
        return 1

    def _loop(self) -> None:
        pause = MIN_PAUSE_S
        while not self._stop.is_set():
            try:
                self.relay_once()
                pause = MIN_PAUSE_S
            except Exception:
                log.exception("relaying a kick to the broker failed; trying again", extra={"retry_in_s": pause})
                self._stop.wait(pause)
                pause = min(pause * 2, MAX_PAUSE_S)
            self.on_round()
