"""The local Customer.io stand-in: Track API v2 over real HTTP on 127.0.0.1, with switchable faults.

Used by the demo (``cio-fleet fake-customerio``), end-to-end and chaos tests, and benchmarks.

* ``POST /api/v2/batch`` and ``POST /api/v2/entity`` with HTTP Basic ``site_id:api_key``; 401 for wrong or
  missing credentials; 413 over the size limits; 400 for a body that is not JSON or has no ``batch`` array;
  207 with ``{"errors": [{"batch_index", "reason", "field", "message"}]}`` for refused items (the others are
  accepted); 200 ``{}`` otherwise. Operations are checked against Customer.io's schema (``schema.py``).
* ``GET /api/v1/accounts/region``: the credential check, answering this server's URL.
* Control endpoints, without authentication: ``GET /_fake/accepted[?site_id=S]``, ``GET /_fake/requests``,
  ``GET /_fake/stats``, ``GET /_fake/health``, ``GET``/``PUT /_fake/faults``, ``PUT /_fake/credentials``,
  ``POST /_fake/reset``.
* Faults (``faults.py``) apply to ``/api/v2/*`` only.

Accepted operations are kept in memory as ``{"site_id", "received_at", "request_id", "operation"}`` and, with a
record path, appended to a JSON Lines file. API keys are never logged, recorded or echoed.
"""

from __future__ import annotations

from worker.local.fake_customerio.faults import FaultRule, rules_from_json
from worker.local.fake_customerio.server import FakeCustomerIO, serve_forever

__all__ = ["FakeCustomerIO", "FaultRule", "rules_from_json", "serve_forever"]
