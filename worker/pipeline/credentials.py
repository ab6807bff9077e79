"""The credentials pause: set when Customer.io refuses a workspace's credentials, lifted when they changed.

A 401/403 pauses the workspace fleet-wide (``WorkspaceLimiter.pause_auth``) with a fingerprint of the credentials
that failed, and parks its partitions behind retry timers as long as the probe interval. When the configured
credentials differ from that fingerprint, the pause is lifted *and* those timers end, so every partition drains at
once. Whoever notices first does both (a drain that starts before the sweeper's first round, or the sweeper), so
no partition waits out a timer set for credentials that are gone.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from worker.errors import Unauthorized
from worker.pipeline.ports import LimiterPort, PartitionStorePort, Ports
from worker.pipeline.settling import Deferred
from worker.settings import WorkspaceConfig
from worker.store.ratelimit import credentials_fingerprint

log = logging.getLogger("cio_fleet.credentials")
#: The pause itself is logged by the sender's logger, as before it moved here.
delivery_log = logging.getLogger("cio_fleet.delivery")


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
    limiter.clear_auth_pause(workspace.name)
    store.end_retry_timers(workspace.name, span or workspace.partitions)
    log.info("credentials changed; resuming the paused workspace", extra={"workspace": workspace.name})
    return True


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
    raise Deferred(deps.settings.auth_probe_interval_s, str(exc))
