"""Configuration: one ``Settings`` object, built at the edge and passed down.

Everything comes from ``CIO_``-prefixed environment variables (nested groups use ``__``, for example
``CIO_RETRY__WINDOW_S``) and from the TOML workspaces file named by ``CIO_WORKSPACES_FILE``::

    [workspaces.acme]
    site_id = "..."
    api_key = "..."            # or api_key_file = "/run/secrets/acme"
    region = "us"              # or "eu"
    track_url = "http://127.0.0.1:8899"   # optional
    rate_limit_rps = 100       # optional
    convert_timestamps = true  # optional
    write_keys = ["..."]       # optional: keys of the HTTP intake (several, to rotate them)
    cors_origins = ["https://app.example.com"]   # optional: browser origins the intake answers

Workspaces may also come from the environment (``CIO_WORKSPACES__ACME__SITE_ID``); environment values
override the file's, key by key. ``load_settings`` turns any problem into one ``ConfigError`` whose message
names the workspace and the field, and never the API key.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from producers.connect import is_cluster_url

#: Regional Track API base URLs (customerio-track-api.md §1.1).
REGION_BASE_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}

#: Default requests per second allowed to one workspace, fleet-wide.
DEFAULT_RATE_LIMIT_RPS = 100.0

#: The fewest partitions (streams) a workspace gets by default, whatever its rate limit.
DEFAULT_PARTITIONS = 16
#: The most partitions a workspace gets by default (an explicit ``partitions`` may go up to 1,024).
MAX_DEFAULT_PARTITIONS = 256
#: The slowest Customer.io answer the default partition count is sized for (seconds).
SLOWEST_ANSWER_S = 0.5
#: What one drain cycle adds to the answer time: the reservation and the settle round trips, the transform, the
#: hand-over between time slices, and partitions whose backlog is uneven (seconds).
DRAIN_CYCLE_OVERHEAD_S = 0.1

#: Threads of a worker process when Celery is not told otherwise (``--concurrency``). A drain holds a thread for
#: its whole slice, so one process keeps ``threads x workspace_max_share`` batches of a workspace in flight: 72,
#: more than the 60 partitions of a workspace at 100 requests/s (``default_partitions``).
DEFAULT_WORKER_THREADS = 96

#: Slack between the longest a request may run after its drainer checked the lease, and the lease's TTL.
LEASE_MARGIN_S = 1.0


#: Broker URL schemes and the broker they name: drain tasks travel on a standalone Redis or on RabbitMQ.
BROKER_SCHEMES: Final = {"redis": "redis", "rediss": "redis", "amqp": "amqp", "amqps": "amqp"}


def default_partitions(rate_limit_rps: float) -> int:
    """The partition count of a workspace that does not set ``partitions`` (pure).

    A partition has one batch in flight at a time, so a workspace sends at most ``partitions / cycle`` requests a
    second, where a cycle is one answer plus ``DRAIN_CYCLE_OVERHEAD_S``. Enough partitions for the workspace's
    whole rate at the slowest answer in range (``SLOWEST_ANSWER_S``) fill its budget at any faster answer too:
    ``ceil(rate_limit_rps x (SLOWEST_ANSWER_S + DRAIN_CYCLE_OVERHEAD_S))``, at least ``DEFAULT_PARTITIONS`` and at
    most ``MAX_DEFAULT_PARTITIONS``. 100 requests/s gives 60.
    """
    wanted = math.ceil(round(rate_limit_rps * (SLOWEST_ANSWER_S + DRAIN_CYCLE_OVERHEAD_S), 6))
    return max(DEFAULT_PARTITIONS, min(MAX_DEFAULT_PARTITIONS, wanted))


class ConfigError(Exception):
    """The configuration is invalid; the message names the workspace and field, never a secret."""


class ActionConfig(BaseModel):
    """One configured action of a workspace (``worker.mapping.actions``): a catalogue action, changed or added."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str
    #: Another instance of ``action`` under this name, starting from its defaults (absent: change the default one).
    name: str | None = None
    enabled: bool = True
    trigger: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    #: Fields left out (TOML has no null; in JSON, ``"field": null`` in ``fields`` says the same).
    unmapped: tuple[str, ...] = ()
    convert_timestamps: bool | None = None


class WorkspaceConfig(BaseModel):
    """One Customer.io workspace: where and how its events are delivered."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = ""
    site_id: str = Field(min_length=1)
    api_key: SecretStr
    region: Literal["us", "eu"] = "us"
    track_url: str | None = None
    rate_limit_rps: float = Field(default=DEFAULT_RATE_LIMIT_RPS, gt=0)
    rate_limit_burst: int = Field(default=1, ge=1)
    #: The limiter aims this fraction under ``rate_limit_rps``, so that scheduling jitter between granting a
    #: request and sending it (at most ``worker.pipeline.pacing.LATE_SEND_TOLERANCE_S``) never puts more than
    #: ``rate_limit_rps`` requests a second at Customer.io over any window of 4 s or more.
    rate_limit_headroom: float = Field(default=0.03, ge=0, lt=0.5)
    convert_timestamps: bool = True
    #: Streams of the workspace, each with one batch in flight at a time; left out, ``default_partitions`` of
    #: ``rate_limit_rps`` (60 at 100 requests/s), enough to use the whole rate at answers of up to 500 ms.
    partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=1024)
    object_type_id: str = "1"
    #: Write keys of the HTTP intake (``cio-fleet intake``): an SDK sending with one of them delivers to this
    #: workspace. Secrets; several so that keys can be rotated; a key belongs to one workspace only.
    write_keys: tuple[SecretStr, ...] = ()
    #: Browser origins (``https://app.example.com``, or ``*``) the intake accepts this workspace's events from.
    cors_origins: tuple[str, ...] = ()
    #: Changes to the default actions and extra actions (``worker.mapping.actions``); none keeps the routing of
    #: ``docs/mapping.md``.
    actions: tuple[ActionConfig, ...] = ()

    @model_validator(mode="after")
    def _derive_partitions(self) -> WorkspaceConfig:
        """No ``partitions`` given: as many as the rate limit needs (an explicit count always wins)."""
        if "partitions" not in self.model_fields_set:
            object.__setattr__(self, "partitions", default_partitions(self.rate_limit_rps))
        return self

    @field_validator("actions")
    @classmethod
    def _actions_compile(cls, value: tuple[ActionConfig, ...]) -> tuple[ActionConfig, ...]:
        """Every trigger and mapping compiles, at start (the error names the action and the field)."""
        from worker.mapping.actions import (
            compile_actions,  # here: the mapping core is only needed when actions are given
        )

        if value:
            compile_actions([entry.model_dump(exclude_none=True) for entry in value])
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_api_key_file(cls, data: Any) -> Any:
        """Resolve ``api_key_file`` (Docker and Kubernetes secrets) into ``api_key``."""
        if not isinstance(data, dict) or "api_key_file" not in data:
            return data
        data = dict(data)
        path = Path(str(data.pop("api_key_file")))
        if "api_key" in data:
            raise ValueError("give api_key or api_key_file, not both")
        try:
            data["api_key"] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"api_key_file {str(path)!r} cannot be read: {exc.strerror}") from None
        return data

    @field_validator("api_key")
    @classmethod
    def _api_key_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("write_keys")
    @classmethod
    def _write_keys_not_blank(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(not key.get_secret_value().strip() for key in value):
            raise ValueError("must not hold an empty key")
        return value

    @field_validator("track_url")
    @classmethod
    def _track_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def base_url(self) -> str:
        """The Track API base URL: ``track_url`` when set, else the region's host."""
        return self.track_url or REGION_BASE_URLS[self.region]

    @property
    def limiter_rps(self) -> float:
        """The rate the fleet-wide limiter enforces: the configured rate less the headroom."""
        return self.rate_limit_rps * (1 - self.rate_limit_headroom)


class RetryPolicy(BaseModel):
    """Exponential backoff with full jitter, bounded by a total window."""

    model_config = ConfigDict(frozen=True)

    base_s: float = Field(default=1.0, gt=0)
    cap_s: float = Field(default=300.0, gt=0)
    window_s: float = Field(default=4 * 3600.0, gt=0)


class BatchingSettings(BaseModel):
    """How events are packed into ``/api/v2/batch`` requests."""

    model_config = ConfigDict(frozen=True)

    max_bytes: int = Field(default=500_000, ge=1_000, le=500_000)
    max_events: int = Field(default=200, ge=1, le=10_000)
    linger_ms: int = Field(default=50, ge=0, le=5_000)
    #: Entries read (and transformed) per step of a drain: about one full batch, so that a drain deferred by the
    #: rate limiter has not transformed events it will read again.
    read_count: int = Field(default=200, ge=1)


class HttpSettings(BaseModel):
    """Timeouts and connections of the worker's HTTP clients (one per thread, ``worker.delivery``)."""

    model_config = ConfigDict(frozen=True)

    #: Bounds each of waiting for a pooled connection, writing the request and reading the answer.
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    #: Keep-alive connections each thread's client holds: one per Customer.io host it sends to (US, EU).
    connections_per_thread: int = Field(default=2, ge=1)

    @property
    def longest_request_s(self) -> float:
        """The longest one request may run: every phase httpx bounds (pool, connect, write, read) at its timeout."""
        return self.connect_timeout_s + 3 * self.timeout_s


class Settings(BaseSettings):
    """The whole configuration of a producer-side tool, a worker or the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="CIO_", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True
    )

    #: The Redis of the streams: ``redis://`` (one node) or ``redis+cluster://`` (a Redis Cluster, any node).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    #: Celery's broker, where drain tasks travel (a secret): unset, the events Redis (a single node); else a
    #: standalone Redis (``redis://``, ``rediss://``) or RabbitMQ (``amqp://``, ``amqps://``). Required when
    #: ``redis_url`` is a Redis Cluster: a cluster cannot carry Celery's queue.
    broker_url: SecretStr | None = None
    #: A worker's Redis command (or connection attempt) fails after this long, so a black-holed Redis never hangs
    #: drain and sweeper threads; longer than the slowest legitimate command (the Lua settle of a batch).
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)
    redis_connect_timeout_s: float = Field(default=5.0, gt=0)
    key_prefix: str = Field(default="cio", pattern=r"^[A-Za-z0-9_.\-]+$")
    workspaces_file: Path | None = None
    workspaces: dict[str, WorkspaceConfig] = Field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    batching: BatchingSettings = BatchingSettings()
    http: HttpSettings = HttpSettings()
    #: How long one drain task works on a partition before yielding the worker slot.
    drain_slice_s: float = Field(default=2.0, gt=0)
    #: A drain task whose slice ends with work left goes on with another slice in the same task, instead of
    #: queueing a new one, while the process has a thread to spare and no partition of the workspace waits for a
    #: drain slot, for at most this long (0: one slice per task). Queueing costs a trip through the broker and the
    #: worker's consumer, which takes up to seconds in a busy process (``docs/architecture.md``).
    drain_task_max_s: float = Field(default=60.0, ge=0)
    #: The share of a worker process's threads that drains of one workspace may hold at once (the rest wait in
    #: the queue), so that a hanging or slow workspace never holds every thread.
    workspace_max_share: float = Field(default=0.75, gt=0, le=1)
    #: A partition lease not renewed for this long is taken over by another worker. It must outlive any request
    #: (see ``_lease_outlives_a_request``).
    lease_ttl_s: float = Field(default=60.0, ge=1)
    #: How often the sweeper looks for partitions with work and no drainer.
    sweep_interval_s: float = Field(default=2.0, gt=0)
    #: On SIGTERM, the batch in flight is finished or released within this time.
    shutdown_grace_s: float = Field(default=25.0, gt=0)
    #: How often a workspace paused by 401/403 is probed with one real batch.
    auth_probe_interval_s: float = Field(default=60.0, gt=0)
    #: The dead-letter queue of one workspace refuses nothing but alarms at ``dlq_alarm_ratio`` of this.
    dlq_max_entries: int = Field(default=1_000_000, ge=1)
    dlq_alarm_ratio: float = Field(default=0.8, gt=0, le=1)
    #: Producer backpressure: ``QueueFull`` past this many waiting events per workspace.
    backlog_cap: int = Field(default=1_000_000, ge=1)
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    sentry_release: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    #: Prometheus endpoint port of a worker process (0 turns it off).
    metrics_port: int = Field(default=9808, ge=0, le=65535)

    @field_validator("lease_ttl_s")
    @classmethod
    def _lease_outlives_a_request(cls, value: float, info: ValidationInfo) -> float:
        """A request sent after the lease check must end before the lease can expire and another worker sends."""
        http, redis_timeout = info.data.get("http"), info.data.get("redis_socket_timeout_s")
        if not isinstance(http, HttpSettings) or redis_timeout is None:
            return value  # their own errors are reported
        needed = redis_timeout + http.longest_request_s + LEASE_MARGIN_S
        if value <= needed:
            raise ValueError(
                f"must exceed {needed:g} s, the longest a request may run after its drainer checked the lease: "
                f"redis_socket_timeout_s ({redis_timeout:g}) + http.connect_timeout_s ({http.connect_timeout_s:g}) "
                f"+ 3 x http.timeout_s ({http.timeout_s:g}; pool, write, read) + {LEASE_MARGIN_S:g} s of margin; "
                "raise lease_ttl_s or lower those timeouts"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """A broker kombu can carry drain tasks on, named by its scheme (the error never shows the URL)."""
        if value is None:
            return None
        url = value.get_secret_value()
        scheme = urlsplit(url).scheme if "://" in url else ""  # "user:pw@host" would read as the scheme "user"
        if scheme not in BROKER_SCHEMES:
            raise ValueError(
                f"CIO_BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL, not {scheme or 'no scheme'}"
                " (a Redis Cluster cannot carry Celery's queues; unset, the events Redis is the broker)"
            )
        return value

    @model_validator(mode="after")
    def _broker_for_a_cluster(self) -> Settings:
        """A Redis Cluster holds the events only: Celery's queue needs a broker of its own."""
        if self.broker_url is None and is_cluster_url(self.redis_url.get_secret_value()):
            raise ValueError(
                "CIO_BROKER_URL is required when CIO_REDIS_URL is a Redis Cluster (a Redis Cluster cannot be the "
                "Celery broker): set it to a standalone redis:// or to an amqp:// URL"
            )
        return self

    def broker(self) -> str:
        """Celery's broker URL (a secret: never log it): ``broker_url``, else the events Redis."""
        chosen = self.broker_url if self.broker_url is not None else self.redis_url
        return chosen.get_secret_value()

    @property
    def broker_kind(self) -> Literal["redis", "amqp"]:
        """The broker's kind, from its scheme: ``redis`` or ``amqp``."""
        return "amqp" if BROKER_SCHEMES.get(urlsplit(self.broker()).scheme) == "amqp" else "redis"

    @property
    def relays_kicks(self) -> bool:
        """Whether the broker is not the events Redis (kicks then go through ``worker.pipeline.relay``)."""
        return self.broker() != self.redis_url.get_secret_value()

    @model_validator(mode="after")
    def _name_workspaces(self) -> Settings:
        named = {key: ws.model_copy(update={"name": key}) for key, ws in self.workspaces.items()}
        object.__setattr__(self, "workspaces", named)
        return self

    @model_validator(mode="after")
    def _write_keys_are_unique(self) -> Settings:
        """A write key names one workspace: the error names both workspaces, never the key."""
        owners: dict[str, str] = {}
        for name, workspace in sorted(self.workspaces.items()):
            for key in workspace.write_keys:
                owner = owners.setdefault(key.get_secret_value(), name)
                if owner != name:
                    raise ValueError(f"workspaces {owner!r} and {name!r} share a write key; each key names one")
        return self

    def write_key_owners(self) -> dict[str, str]:
        """Each intake write key and the workspace it names."""
        return {key.get_secret_value(): ws.name for ws in self.workspaces.values() for key in ws.write_keys}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, WorkspacesFileSource(settings_cls), file_secret_settings)

    def workspace(self, name: str) -> WorkspaceConfig:
        """The named workspace, or a ``ConfigError`` listing the known ones."""
        try:
            return self.workspaces[name]
        except KeyError:
            known = ", ".join(sorted(self.workspaces)) or "none configured"
            raise ConfigError(f"unknown workspace {name!r} (known: {known})") from None


class WorkspacesFileSource(PydanticBaseSettingsSource):
    """Reads ``[workspaces.*]`` tables from the TOML file named by ``CIO_WORKSPACES_FILE``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("workspaces_file") or os.environ.get("CIO_WORKSPACES_FILE")
        if not path:
            return {}
        return {"workspaces": read_workspaces_file(Path(path))}


def read_workspaces_file(path: Path) -> dict[str, Any]:
    """The ``workspaces`` table of a TOML file, or a ``ConfigError`` naming the file and the problem."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"workspaces file {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"workspaces file {str(path)!r} is not valid TOML: {exc}") from None
    workspaces = document.get("workspaces", {})
    if not isinstance(workspaces, dict):
        raise ConfigError(f"workspaces file {str(path)!r}: 'workspaces' must be a table of tables")
    return workspaces


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the workspace and the field, never the value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        location = [str(part) for part in error["loc"]]
        if len(location) >= 2 and location[0] == "workspaces":
            where = f"workspace {location[1]!r}, field {'.'.join(location[2:]) or '(table)'!r}"
        else:
            where = f"setting {'.'.join(location) or '(root)'!r}"
        problems.append(f"{where}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment and files, or raise one clear ``ConfigError``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
