"""`nba score --all --publish` against the real broker and Redis: a batch run decides under the
period's ledger and the stream's contact history, publishes once per customer in Kafka
transactions with the stream's reasons, and a second try of the same run pays nothing more."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from nba.commands.score import score_base
from policies.rules import ContactRules, ContactState
from simulator.config import WorldConfig
from simulator.world import build_world
from stream_app import kafka_clients
from stream_app.contacts import ContactLog
from stream_app.ledger import BudgetLedger
from stream_app.redis_clients import redis_client
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain, promoted_registry

pytestmark = pytest.mark.integration
BUDGET = 20_000.0
EARLIER_SPEND = 5_000.0


def test_a_published_batch_run_shares_the_ledger_and_contacts_and_pays_once(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: TopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = promoted_registry(tmp_path)
    snapshot = build_world(WorldConfig(n_customers=3_000, seed=2)).customers
    (tmp_path / "world").mkdir()
    snapshot.to_parquet(tmp_path / "world" / "customers.parquet", index=False)
    run = uuid.uuid4().hex[:8]
    env = {
        "NBA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NBA_REDIS_URL": redis_url,
        "NBA_TOPIC_EVENTS": make_topic("events"),
        "NBA_TOPIC_ACTIONS": make_topic("actions"),
        "NBA_BUDGET": str(BUDGET),
        "NBA_BUDGET_PERIOD": f"batch-{run}",
        "NBA_CONSUMER_GROUP": f"g-{run}",
        "NBA_STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    client = redis_client(settings)
    ledger = BudgetLedger(client, settings.budget_period, BUDGET)
    ledger.open(create=True)
    assert ledger.reserve("stream-decision", "retention_email", EARLIER_SPEND).granted
    # Everyone was phoned an hour ago by the stream: the phone's cooldown holds for all.
    contacts = ContactLog.for_topic(client, ContactRules(), settings.topic_events)
    phoned = time.time() - 3_600
    contacts.record([(c, "phone", phoned) for c in snapshot["customer_id"].astype(str)])

    first = score_base(tmp_path / "world", registry, 1e9, tmp_path / "d.parquet", publish="")
    done = first.publication
    assert done is not None and done.published == len(snapshot)
    assert done.already_delivered == 0 and done.actions > 50
    assert ledger.spent() == pytest.approx(EARLIER_SPEND + done.spend)
    assert BUDGET - 500 < ledger.spent() <= BUDGET, "the batch spent what the stream left"

    reader = kafka_clients.consumer(settings, f"r-{run}", **{"isolation.level": "read_committed"})
    reader.subscribe([settings.topic_actions])
    published = [json.loads(m.value()) for m in drain(reader, len(snapshot) + 10, 20)]
    reader.close()
    assert len(published) == len(snapshot)
    assert len({a["customer_id"] for a in published}) == len(snapshot), "one per customer"
    acted = [a for a in published if a["action"] != "do_nothing"]
    assert sum(a["cost"] for a in acted) == pytest.approx(done.spend, abs=0.05)
    assert not [a for a in acted if a["channel"] == "phone"], "the stream's phone cooldown"
    assert all(a["reasons"][0].startswith("segment:") for a in published)
    assert all(a["trigger"]["topic"] == f"nba-batch:{done.run_id}" for a in published)
    assert any("blocked:account_manager_call:cooldown" in a["reasons"] for a in published)
    frame = first.decisions.set_index("customer_id")
    assert all(
        list(frame.loc[a["customer_id"], "reasons"]) == a["reasons"] for a in published[:200]
    ), "the parquet's reasons are the published ones"
    emailed = next(a["customer_id"] for a in acted if a["channel"] == "email")
    history = contacts.apply(ContactState.fresh(1), [emailed], [time.time()])
    assert history.days_since_contact[0][1] < 0.01, "the batch's contact is in the stream's log"

    again = score_base(tmp_path / "world", registry, 1e9, tmp_path / "d2.parquet", publish="")
    assert again.publication is not None and again.publication.run_id == done.run_id
    assert again.publication.published == 0
    assert again.publication.already_delivered == len(snapshot)
    assert ledger.spent() == pytest.approx(EARLIER_SPEND + done.spend), "paid once"
