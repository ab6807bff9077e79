"""The credentials pause: set when Customer.io refuses a workspace's credentials, lifted when they work again.

A 401/403 pauses the workspace fleet-wide (``WorkspaceLimiter.pause_auth``) with a fingerprint of the credentials
that failed, and parks its partitions behind retry timers as long as the probe interval. The pause is lifted when
the configured credentials differ from that fingerprint (whoever notices first: a drain that starts before the
sweeper's first round, or the sweeper) or when a probe is accepted; lifting it also ends those timers, so every
partition with events drains at once (the sweeper kicks the freed ones), and none waits out a timer set for a
pause that is gone.

No timer outlives the pause, whatever the interleaving of drainers and lifters (``defer_while_paused``,
``lift_pause``): a lifter clears the pause *then* ends the timers; a drainer sets its timer *then* reads the pause,
and turns its timer into a kick itself when the pause is gone. So either the lifter sees the timer, or the drainer
sees the pause lifted.
"""

from __future__ import annotations

import logging
from typing import Literal, NoReturn

from producers.wire import KICK_TTL_MS
from worker.errors import Unauthorized
from worker.pipeline.ports import LimiterPort, PartitionStorePort, Ports
from worker.pipeline.settling import Deferred
from worker.settings import WorkspaceConfig
from worker.store.ratelimit import credentials_fingerprint

log = logging.getLogger("cio_fleet.credentials")
#: The pause itself is logged by the sender's logger, as before it moved here.
delivery_log = logging.getLogger("cio_fleet.delivery")

#: What became of a partition held for the credentials pause (``defer_while_paused``).
DeferOutcome = Literal["later", "requeue", "done"]


def configured_fingerprint(workspace: WorkspaceConfig) -> str:
    """The fingerprint of the workspace's configured site id and API key (never the key itself)."""
    return credentials_fingerprint(workspace.site_id, workspace.api_key.get_secret_value())


def resume_if_credentials_changed(
    limiter: LimiterPort, store: PartitionStorePort, workspace: WorkspaceConfig, span: int | None = None
) -> bool:
    """Lift a 401/403 pause whose credentials are not the configured ones any more, and end its retry timers.

    Args:
        limiter: The fleet's pauses.
        store: The partitions.
        workspace: The workspace as configured now.
        span: Streams ``0..span-1`` that may hold events (``layout``), when more than the configured partitions.

    Returns:
        True when the pause was lifted here.
    """
    pause = limiter.auth_pause(workspace.name)
    if pause is None or pause.fingerprint == configured_fingerprint(workspace):
        return False
    lift_pause(limiter, store, workspace, span)
    log.info("credentials changed; resuming the paused workspace", extra={"workspace": workspace.name})
    return True


def lift_pause(
    limiter: LimiterPort, store: PartitionStorePort, workspace: WorkspaceConfig, span: int | None = None
) -> None:
    """Lift the workspace's credentials pause, then end its partitions' retry timers (in this order).

    Args:
        limiter: The fleet's pauses.
        store: The partitions.
        workspace: The workspace as configured now.
        span: Streams ``0..span-1`` that may hold events; read from the store when not given.
    """
    name = workspace.name
    limiter.clear_auth_pause(name)
    # After the clear: a drainer that set its timer before the clear is freed here; one that sets it after the clear
    # reads the pause gone and frees itself (``defer_while_paused``).
    store.end_retry_timers(name, span if span is not None else store.span(name, workspace.partitions))


def defer_while_paused(deps: Ports, workspace: str, partition: int, token: str, delay_s: float) -> DeferOutcome:
    """Put the partition drained by ``token`` behind a retry timer of ``delay_s`` for the credentials pause.

    The timer is set first and the pause read after (see the module's docstring): when the pause was lifted
    meanwhile, its lifter may have ended the timers before this one was set, so the timer is turned into a kick
    here instead of being waited out.

    Returns:
        ``later``: the partition waits for its timer (or the lease was lost: nothing to do). ``requeue``: the pause
        was lifted, the lease is ``kicked``: queue a drain task now. ``done``: the pause was lifted and the lifter
        (or the sweeper) already freed or kicked the partition.
    """
    store = deps.store
    if not store.defer(workspace, partition, token, int(delay_s * 1000)):
        return "later"
    if deps.limiter.auth_pause(workspace) is not None:
        return "later"
    log.info(
        "credentials pause lifted as the partition was held for it; draining it now",
        extra={"workspace": workspace, "partition": partition},
    )
    return "requeue" if store.kick_retry_timer(workspace, partition, KICK_TTL_MS) else "done"


def pause_for_credentials(deps: Ports, workspace: WorkspaceConfig, exc: Unauthorized) -> NoReturn:
    """Pause the workspace fleet-wide after a 401/403 with the fingerprint of the refused credentials, hold its probe.

    Raises:
        Deferred: always; the partition waits for the next probe (its events are kept).
    """
    name = workspace.name
    fingerprint = configured_fingerprint(workspace)
    deps.limiter.pause_auth(name, status=exc.status, reason=str(exc), fingerprint=fingerprint)
    deps.store.hold_probe(name, int(deps.settings.auth_probe_interval_s * 1000))
    deps.metrics.auth_failure(name)
    delivery_log.error(
        "workspace paused: Customer.io refused its credentials; its events are kept",
        extra={"workspace": name, "status": exc.status},
    )
    raise Deferred(deps.settings.auth_probe_interval_s, str(exc), paused=True)
