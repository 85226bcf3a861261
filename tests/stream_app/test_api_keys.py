"""API keys: created once, stored hashed, checked in constant time, scoped, revocable."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from policies.errors import ConfigError
from stream_app.api.gateway import request_event_id
from stream_app.api.keys import KeyStore, Scope


def test_a_key_is_stored_as_a_digest_and_authenticates_with_its_scopes(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    token = store.create("crm", ["read", "decide"])
    written = (tmp_path / "keys.json").read_text()
    assert token not in written and token.split("_", 2)[2] not in written
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
    key = KeyStore(tmp_path / "keys.json").authenticate(token)  # another process reads it
    assert key is not None and key.name == "crm"
    assert key.allows(Scope.READ) and key.allows(Scope.DECIDE)
    reader = store.authenticate(store.create("lead", ["read"]))
    assert reader is not None and not reader.allows(Scope.DECIDE)


@pytest.mark.parametrize("presented", [None, "", "nba", "nba_x_y", "Bearer x", "nba_0_0_0"])
def test_anything_but_a_created_token_is_refused(tmp_path: Path, presented: str | None) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.create("crm", ["read"])
    assert store.authenticate(presented) is None


def test_a_token_with_a_changed_secret_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    token = store.create("crm", ["read"])
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_a_revoked_key_is_refused_by_a_running_store(tmp_path: Path) -> None:
    running = KeyStore(tmp_path / "keys.json")
    token = running.create("crm", ["read"])
    assert running.authenticate(token) is not None
    cli = KeyStore(tmp_path / "keys.json")
    cli.revoke(cli.keys()[0].key_id)
    assert running.authenticate(token) is None
    with pytest.raises(ConfigError, match="no API key"):
        cli.revoke("missing")


def test_unknown_scopes_and_a_damaged_file_are_one_clear_error(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(ConfigError, match="scopes must be among read, decide"):
        store.create("crm", ["admin"])
    with pytest.raises(ConfigError, match="scopes must be among"):
        store.create("crm", [])
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [{"key_id": 1}]}))
    with pytest.raises(ConfigError, match="not an API key file"):
        store.keys()


def test_an_idempotency_key_fixes_the_event_id_per_api_key() -> None:
    assert request_event_id("k1", "call-17") == request_event_id("k1", "call-17")
    assert request_event_id("k1", "call-17") != request_event_id("k2", "call-17")
    assert request_event_id("k1", None) != request_event_id("k1", None)
    assert len(request_event_id("k1", "x" * 128)) <= 128  # an event_id's limit
