"""``CIO_BROKER_URL``: which broker drain tasks travel on, the options each needs, and its password kept secret."""

from __future__ import annotations

import pytest

from worker.broker import VISIBILITY_TIMEOUT_S, celery_options
from worker.ops.logs import MASK, redact, settings_secrets
from worker.settings import ConfigError, Settings, load_settings

EVENTS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://cio-fleet:rabbit-pa55word@rabbitmq:5672/cio"


def test_without_a_broker_url_the_events_redis_is_the_broker():
    settings = load_settings(redis_url=EVENTS)
    assert (settings.broker(), settings.broker_kind, settings.relays_kicks) == (EVENTS, "redis", False)


def test_a_broker_url_equal_to_the_events_redis_is_the_same_broker():
    assert not load_settings(redis_url=EVENTS, broker_url=EVENTS).relays_kicks


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (AMQP, "amqp"),
        ("amqps://user:secret-pw@mq.example.com:5671/cio", "amqp"),
        ("redis://127.0.0.1:6379/1", "redis"),
        ("rediss://:secret-pw@broker.example.com:6380/0", "redis"),
    ],
)
def test_rabbitmq_and_standalone_redis_brokers_are_accepted_and_relay_the_kicks(url, kind):
    settings = load_settings(redis_url=EVENTS, broker_url=url)
    assert (settings.broker(), settings.broker_kind, settings.relays_kicks) == (url, kind, True)


@pytest.mark.parametrize(
    "url", ["kafka://broker:9092", "sqs://key:secret@", "127.0.0.1:5672", "redis+cluster://h:7000"]
)
def test_a_broker_url_of_another_scheme_is_refused_naming_the_variable_and_never_the_url(url):
    with pytest.raises(ConfigError) as refused:
        load_settings(broker_url=url)
    message = str(refused.value)
    assert message.startswith("invalid configuration: setting 'broker_url': ")
    assert "CIO_BROKER_URL must be a redis://, rediss://, amqp:// or amqps:// URL" in message
    assert "secret" not in message


def test_a_redis_cluster_for_the_events_needs_a_broker_of_its_own():
    with pytest.raises(ConfigError, match="CIO_BROKER_URL is required when CIO_REDIS_URL is a Redis Cluster"):
        load_settings(redis_url="redis+cluster://127.0.0.1:7000")
    assert load_settings(redis_url="redis+cluster://127.0.0.1:7000", broker_url=AMQP).broker_kind == "amqp"


def test_on_rabbitmq_the_drain_queue_is_durable_its_messages_persistent_and_publishes_confirmed():
    options = celery_options(Settings(key_prefix="acme", broker_url=AMQP))
    (queue,) = options["task_queues"]
    assert (queue.name, queue.routing_key, queue.durable) == ("acme.drain", "acme.drain", True)
    assert (queue.exchange.name, queue.exchange.type, queue.exchange.durable) == ("acme.drain", "direct", True)
    assert options["task_default_delivery_mode"] == "persistent"
    assert options["broker_transport_options"] == {"confirm_publish": True}
    assert "broker_transport" not in options  # kombu's own AMQP transport, not the patched Redis one


@pytest.mark.parametrize("broker", [None, "redis://127.0.0.1:6379/1"])
def test_on_redis_the_patched_transport_and_the_visibility_timeout_are_used(broker):
    options = celery_options(Settings(key_prefix="acme", broker_url=broker))
    assert options["broker_transport"] == "worker.broker:Transport"
    assert options["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT_S
    assert options["broker_transport_options"]["unacked_key"] == "acme.unacked"


def test_the_broker_password_is_a_secret_of_the_configuration():
    assert "rabbit-pa55word" in settings_secrets(Settings(broker_url=AMQP))


@pytest.mark.parametrize(
    "line",
    [
        "Connected to amqp://cio-fleet:rabbit-pa55word@rabbitmq:5672/cio",
        "error: Cannot connect to amqps://user:rabbit-pa55word@mq:5671//: [Errno 111]",
        "redis://:rabbit-pa55word@127.0.0.1:6379/0 refused",
    ],
)
def test_the_password_of_any_url_is_masked_even_when_not_registered(line):
    masked = redact(line)
    assert "rabbit-pa55word" not in masked
    assert f":{MASK}@" in masked
