"""How the engine lays out its Redis keys and connection for a Redis Cluster (no server)."""

from __future__ import annotations

from redis.crc import key_slot

from stream_app.feature_store import redis_connection_string
from stream_app.ledger import BudgetLedger
from stream_app.outcome_feed import OutcomeFeed
from stream_app.redis_clients import RedisClient, redis_client
from stream_app.settings import load_settings


def _client() -> RedisClient:
    return redis_client(load_settings(redis_url="redis://127.0.0.1:1/0"))  # never connects


def test_keys_one_script_touches_share_a_slot_and_periods_spread() -> None:
    ledgers = [BudgetLedger(_client(), f"2026-{m:02d}", 100.0) for m in range(1, 13)]
    for ledger in ledgers:
        assert len({key_slot(k.encode()) for k in ledger.keys}) == 1, ledger.keys
    assert len({key_slot(ledger.keys[0].encode()) for ledger in ledgers}) > 1
    feed = OutcomeFeed(_client(), "nba-outcomes")
    seen_key = feed._seen + "a-1|renewed|2027-01-01"  # what its script is given with the counts
    assert key_slot(seen_key.encode()) == key_slot(feed.counts_key.encode())


def test_feast_connection_string_has_no_database_on_a_cluster() -> None:
    url = "redis://:pw@10.0.0.5:7000/0"
    assert redis_connection_string(url, 1.5) == (
        "10.0.0.5:7000,db=0,socket_timeout=1.5,socket_connect_timeout=1.5,password=pw"
    )
    assert redis_connection_string(url, 1.5, cluster=True) == (
        "10.0.0.5:7000,socket_timeout=1.5,socket_connect_timeout=1.5,password=pw"
    )


def test_the_local_url_follows_the_cluster_setting() -> None:
    assert load_settings(redis_port=36379).local_redis_url == "redis://127.0.0.1:36379/0"
    clustered = load_settings(redis_cluster=True, redis_cluster_port=37001, redis_url=None)
    assert clustered.effective_redis_url() == "redis://127.0.0.1:37001/0"
