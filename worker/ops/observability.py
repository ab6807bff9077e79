"""Sentry for worker processes, with every event scrubbed before it leaves the process.

``init_sentry`` is called by the Celery edge from the ``celeryd_init``/``worker_init`` signal (Sentry's docs
require that for Celery), never at import. It turns on the Celery integration with personal data off, no
request bodies and no local variables, and installs ``scrub_event`` as ``before_send``. The scrubber removes,
anywhere in an event: registered secrets (``worker.ops.logs.register_secrets``: API keys, Redis password, the
DSN), ``Authorization`` header values, email addresses, event payloads (any ``extra``/``contexts`` value
named ``event``, ``payload`` or ``body``, at any depth) and Celery task arguments.

Permanent failures are grouped by reason: an event with the tag ``failure_reason`` (a bounded value such as
``invalid_event`` or ``rejected_400``, set by the pipeline) gets the fingerprint
``["permanent-failure", <reason>]``, so one bad deploy of a producer is one Sentry issue, not thousands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import sentry_sdk
import sentry_sdk.consts
from sentry_sdk.integrations.celery import CeleryIntegration

from worker.ops.logs import MASK, SENSITIVE_KEYS, redact, register_secrets, settings_secrets
from worker.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint
    from sentry_sdk.transport import Transport

__all__ = ["FILTERED", "PAYLOAD_KEYS", "init_sentry", "scrub_event"]

#: What a removed value looks like in Sentry.
FILTERED: Final = "[Filtered]"
#: Keys under ``extra`` and ``contexts`` whose values are event data and never leave the process.
PAYLOAD_KEYS: Final = frozenset({"event", "events", "payload", "body", "data", "request_body", "raw"})
#: The tag the pipeline sets on permanent failures; its value becomes part of the fingerprint.
FAILURE_REASON_TAG: Final = "failure_reason"

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
#: Nesting beyond this is cut off rather than walked (events are bounded, this guards against cycles).
_MAX_DEPTH: Final = 32


def init_sentry(settings: Settings, secrets: Iterable[str], *, transport: Transport | None = None) -> bool:
    """Start Sentry for this process when a DSN is configured.

    Args:
        settings: Supplies ``sentry_dsn``, ``sentry_release`` and ``sentry_environment``; its own secrets are
            registered for scrubbing too.
        secrets: Further secret values to mask in every event.
        transport: Replaces the HTTP transport (tests capture envelopes locally).

    Returns:
        False when no DSN is configured (nothing started), else True.
    """
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value().strip():
        return False
    register_secrets([*secrets, *settings_secrets(settings)])
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration()],
        **_no_pii_option(),
        release=settings.sentry_release,
        environment=settings.sentry_environment,
        max_request_body_size="never",
        include_local_variables=False,
        before_send=scrub_event,
        transport=transport,
    )
    return True


def _no_pii_option() -> dict[str, Any]:
    """``send_default_pii=False`` where the SDK still takes it; newer SDKs deprecate it for ``data_collection``.

    Their default is already "no personal data" with Sentry's own ``EventScrubber`` on; passing a
    ``data_collection`` would turn that scrubber off, so on those versions the option is left out.
    """
    if "data_collection" in sentry_sdk.consts.DEFAULT_OPTIONS:
        return {}
    return {"send_default_pii": False}


def scrub_event(event: Event, hint: Hint) -> Event | None:
    """Remove secrets, personal data and payloads from a Sentry event; group permanent failures by reason.

    Args:
        event: The event about to be sent; changed in place and returned.
        hint: Sentry's hint (unused).

    Returns:
        The scrubbed event (never dropped).
    """
    document = cast("dict[str, Any]", event)
    for section in ("extra", "contexts"):
        if isinstance(document.get(section), dict):
            document[section] = _drop_payloads(document[section], 0)
    _drop_celery_arguments(document)
    request = document.get("request")
    if isinstance(request, dict):
        for field in ("data", "cookies", "query_string"):
            if field in request:
                request[field] = FILTERED
    scrubbed = cast("dict[str, Any]", _scrub(document, 0))
    reason = _failure_reason(scrubbed.get("tags"))
    if reason:
        scrubbed["fingerprint"] = ["permanent-failure", reason]
    return cast("Event", scrubbed)


def _drop_payloads(value: Any, depth: int) -> Any:
    """Replace every value whose key names event data, at any depth of a mapping."""
    if not isinstance(value, Mapping) or depth > _MAX_DEPTH:
        return value
    return {
        key: FILTERED if str(key).lower() in PAYLOAD_KEYS else _drop_payloads(item, depth + 1)
        for key, item in value.items()
    }


def _drop_celery_arguments(document: dict[str, Any]) -> None:
    extra = document.get("extra")
    job = extra.get("celery-job") if isinstance(extra, dict) else None
    if isinstance(job, dict):
        for field in ("args", "kwargs"):
            if field in job:
                job[field] = FILTERED


def _scrub(value: Any, depth: int) -> Any:
    """Mask secrets and emails in every string; mask sensitive keys (Authorization ...) whole."""
    if isinstance(value, str):
        return _EMAIL.sub("[email]", redact(value))
    if depth > _MAX_DEPTH:
        return FILTERED
    if isinstance(value, Mapping):
        return {
            key: MASK if str(key).lower() in SENSITIVE_KEYS else _scrub(item, depth + 1) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def _failure_reason(tags: Any) -> str | None:
    """The ``failure_reason`` tag, whether tags come as a mapping or as pairs."""
    if isinstance(tags, Mapping):
        reason = tags.get(FAILURE_REASON_TAG)
    elif isinstance(tags, list):
        reason = next((v for k, v in (p for p in tags if len(p) == 2) if k == FAILURE_REASON_TAG), None)
    else:
        reason = None
    return str(reason) if reason else None


def report_permanent_failure(workspace: str, outcome: str, status: int | None, count: int) -> None:
    """Tell Sentry that events were dead-lettered, grouped by a bounded reason (never the payload or reason text).

    Args:
        workspace: The workspace's name.
        outcome: The dead-letter outcome (``rejected``, ``item_rejected``, ``failed_after_retries``).
        status: The HTTP status involved, if any.
        count: How many events this report stands for.
    """
    reason = f"{outcome}:{status}" if status else outcome
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("failure_reason", reason)
        scope.set_tag("workspace", workspace)
        scope.set_extra("events", count)
        sentry_sdk.capture_message(f"events dead-lettered: {reason}", level="warning")
