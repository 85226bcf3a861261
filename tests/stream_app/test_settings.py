"""Settings validation (no servers needed)."""

from __future__ import annotations

import pytest

from nba.local_servers import stack
from policies.errors import ConfigError
from stream_app.settings import load_settings


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_KAFKA_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="NBA_KAFKA_PORT"):
        load_settings()


def test_pacing_start_needs_its_utc_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_PACING_START", "2026-12-02T00:00:00Z")
    assert load_settings().pacing_start.timestamp() == 1_796_169_600  # type: ignore[union-attr]
    monkeypatch.setenv("NBA_PACING_START", "2026-12-02T00:00:00")  # whose midnight?
    with pytest.raises(ConfigError, match="NBA_PACING_START: .*timezone"):
        load_settings()


def test_secret_is_never_echoed_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBA_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    monkeypatch.setenv("NBA_REDIS_URL", "")
    monkeypatch.setenv("NBA_KAFKA_SECURITY_PROTOCOL", "BOGUS")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert "hunter2" not in str(excinfo.value)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka_port = 1  # type: ignore[misc]


def test_unknown_service_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="unknown service 'zookeeper'"):
        stack.status(load_settings(), ["zookeeper"])


def test_kraft_cluster_ids_never_start_with_a_dash() -> None:
    # About 1 in 64 random ids would, and the storage tool then refuses to format (seen in CI).
    from nba.local_servers.kafka import _cluster_id

    ids = [_cluster_id() for _ in range(5_000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
