"""The lease must outlive any request: settings where a request can outlive it are refused at load."""

from __future__ import annotations

import pytest

from worker.settings import ConfigError, Settings, load_settings


def test_the_default_lease_outlives_a_request_at_the_default_timeouts():
    settings = load_settings()
    longest = settings.redis_socket_timeout_s + settings.http.longest_request_s
    assert settings.lease_ttl_s > longest


def test_a_lease_shorter_than_a_request_is_refused_naming_every_field_involved():
    # Given the default timeouts (a request may run 5 + 5 + 3 x 10 s after the lease check)
    # When the lease is 30 s, then one error names the lease, the bound and the fields it comes from
    with pytest.raises(ConfigError) as refused:
        load_settings(lease_ttl_s=30)
    message = str(refused.value)
    assert message.startswith("invalid configuration: setting 'lease_ttl_s': ")
    assert "must exceed 41 s" in message
    for field in ("redis_socket_timeout_s", "http.connect_timeout_s", "http.timeout_s"):
        assert field in message


@pytest.mark.parametrize(
    ("lease_s", "http", "redis_timeout_s", "valid"),
    [
        (6, {"timeout_s": 1, "connect_timeout_s": 0.5}, 1, True),  # 0.5 + 3 + 1 + 1 = 5.5 s
        (5.5, {"timeout_s": 1, "connect_timeout_s": 0.5}, 1, False),
        (6, {"timeout_s": 1, "connect_timeout_s": 0.5}, 2, False),
        (6, {"timeout_s": 2, "connect_timeout_s": 0.5}, 1, False),
        (75, {"timeout_s": 20}, 5, True),  # 5 + 60 + 5 + 1 = 71 s
    ],
)
def test_the_lease_must_exceed_the_longest_request_after_the_check(lease_s, http, redis_timeout_s, valid):
    def load() -> Settings:
        return load_settings(lease_ttl_s=lease_s, http=http, redis_socket_timeout_s=redis_timeout_s)

    if valid:
        assert load().lease_ttl_s == lease_s
    else:
        with pytest.raises(ConfigError, match="setting 'lease_ttl_s'"):
            load()


def test_an_invalid_timeout_is_reported_as_itself_not_as_a_lease_problem():
    with pytest.raises(ConfigError) as refused:
        load_settings(http={"timeout_s": 0})
    assert "http.timeout_s" in str(refused.value)
    assert "lease_ttl_s" not in str(refused.value)
