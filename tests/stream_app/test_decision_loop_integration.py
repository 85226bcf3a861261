"""The decision loop against the real broker and Redis: poison messages, replay idempotence."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import Counter

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from nba.replay import replay_events
from policies.decide import PolicyConfig
from policies.pacing import Pacer, PacingConfig
from simulator.config import WorldConfig
from simulator.events import generate_events
from simulator.sources import WorldScoreSource
from simulator.truth import contact_state, noisy_scores
from simulator.world import build_world
from stream_app import kafka_clients
from stream_app.decision_loop import BatchStats, DecisionLoop, LoopSettings, RenewableProducer
from stream_app.kafka_clients import LIBRDKAFKA_LOGGER
from stream_app.ledger import BudgetLedger
from stream_app.settings import Settings, load_settings
from tests.conftest import TopicFactory, drain, renewable_producer

pytestmark = pytest.mark.integration

V1 = [("schema-version", b"1")]
_FINE = {
    "event_id": "p",
    "customer_id": "C00000001",
    "event_type": "login",
    "occurred_at": "2026-01-01T00:00:00Z",
}


def _poison(**changes: object) -> bytes:
    return json.dumps({**_FINE, **changes}).encode()


# Every DLQ code, each from a record a buggy or hostile producer could send (key C00000001).
POISON: list[tuple[bytes | None, list[tuple[str, bytes]], str]] = [
    (b"{not json", V1, "invalid_json"),
    (_poison(properties={"n": 1}).replace(b'"n": 1', b'"n": NaN'), V1, "invalid_json"),
    (_poison(event_type="teleport"), V1, "unknown_event_type"),
    (b'{"event_id": 5}', V1, "invalid_schema"),
    (_poison(event_type="nps_response", properties={"score": 99}), V1, "invalid_schema"),
    (_poison(event_type="support_ticket", properties={"severity": -3}), V1, "invalid_schema"),
    (b"y" * 100_000, V1, "too_large"),
    (_poison(properties={"blob": "z" * 900_000}), V1, "too_large"),
    (
        _poison(properties={"x": 0}).replace(b"0}", b"[" * 5_000 + b"]" * 5_000 + b"}"),
        V1,
        "too_deep",
    ),
    (_poison(occurred_at="2099-01-01T00:00:00Z"), V1, "from_the_future"),
    (_poison(customer_id="C00000002"), V1, "key_mismatch"),
    (None, V1, "empty"),
    (_poison(), [("schema-version", b"9")], "unsupported_schema_version"),
    (b'{"event_id":"z"}', [], "missing_header"),
]


def _loop(  # type: ignore[no-untyped-def]
    settings,
    topics: dict[str, str],
    world,
    client: redis.Redis,
    period: str,
    group: str,
    period_s: float = 1.0,
    pacing_start_s: float | None = None,
    producer: RenewableProducer | None = None,
    batch_size: int = 500,
    overlap_min_events: int = 50,
) -> DecisionLoop:
    source = WorldScoreSource(world, noisy_scores(world, 0.5, 1), contact_state(world))
    consumer = kafka_clients.consumer(settings, group)
    consumer.subscribe([topics["events"]])
    return DecisionLoop(
        settings=LoopSettings(
            events_topic=topics["events"],
            actions_topic=topics["actions"],
            dlq_topic=topics["dlq"],
            trigger_types=frozenset({"login", "support_ticket"}),
            min_interval_s=86_400.0,
            max_message_bytes=64_000,
            pacing_start_s=pacing_start_s,
            batch_size=batch_size,
            overlap_min_events=overlap_min_events,
        ),
        policy=PolicyConfig(),
        scores=source.scores,
        contacts=source.contacts,
        consumer=consumer,
        producer=producer or renewable_producer(settings),
        redis_client=client,
        ledger=BudgetLedger(client, period, budget=20_000.0),
        pacing=PacingConfig(budget=20_000.0, period_s=period_s),
        pacer=Pacer(0.001),
    )


def _world_streaming_600_events(settings, topic: str, seed: int):  # type: ignore[no-untyped-def]
    """A 400-customer world whose first 600 engagement events are already on ``topic``."""
    world = build_world(WorldConfig(n_customers=400, seed=seed))
    replay_events(
        generate_events(world, days=0.5),
        kafka_clients.producer(settings),
        topic,
        rate=50_000,
        limit=600,
    )
    return world


def _run_until(loop: DecisionLoop, expected_consumed: int) -> BatchStats:
    total = BatchStats()
    for _ in range(400):
        total.add(loop.run_once())
        if total.consumed >= expected_consumed:
            break
    return total


def test_poison_goes_to_dlq_and_a_replay_republishes_the_same_actions(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=3) for name in ("events", "actions", "dlq")}
    world = build_world(WorldConfig(n_customers=400, seed=2))
    events = generate_events(world, days=0.5)
    producer = kafka_clients.producer(settings)
    replay_events(events, producer, topics["events"], rate=50_000, limit=1_500)
    for value, headers, _ in POISON:
        producer.produce(topics["events"], key=b"C00000001", value=value, headers=headers)
    assert producer.flush(30) == 0
    total = 1_500 + len(POISON)
    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"

    first = _run_until(_loop(settings, topics, world, client, period, f"g1-{period}"), total)
    assert first.consumed == total and first.invalid == len(POISON)
    assert first.decided > 50
    ledger = BudgetLedger(client, period, budget=20_000.0)
    spent = ledger.spent()
    assert 0 < spent <= 20_000.0

    # Replay the whole topic from offset 0 with a new consumer group (a new worker fleet).
    second = _run_until(_loop(settings, topics, world, client, period, f"g2-{period}"), total)
    assert second.decided == 0 and second.republished == 0
    assert second.already_delivered == first.decided, "delivered before: nothing to publish"
    assert ledger.spent() == spent, "a replay spends nothing more"

    reader = kafka_clients.consumer(
        settings, f"r-{period}", **{"isolation.level": "read_committed"}
    )
    reader.subscribe([topics["actions"]])
    published = drain(reader, first.decided + 1, timeout_s=10)
    reader.close()
    assert len(published) == first.decided, "one action message per trigger, replay included"
    by_id: dict[str, set[bytes]] = {}
    for msg in published:
        by_id.setdefault(json.loads(msg.value())["action_id"], set()).add(msg.value())
    assert len(by_id) == first.decided
    assert all(len(contents) == 1 for contents in by_id.values()), "no action_id with two contents"

    dlq = kafka_clients.consumer(settings, f"d-{period}")
    dlq.subscribe([topics["dlq"]])
    records = [json.loads(m.value()) for m in drain(dlq, 2 * len(POISON))]
    dlq.close()
    codes = Counter(r["error_code"] for r in records)
    expected = Counter(code for _, _, code in POISON)
    assert codes == {code: 2 * n for code, n in expected.items()}, "each poison, once per pass"
    assert all(len(json.dumps(r)) < 400_000 for r in records), "every DLQ record fits the topic"
    assert any(r["original_truncated"] for r in records if r["error_code"] == "too_large")
    client.close()


@pytest.mark.parametrize("marks_lost", [False, True], ids=["marked", "crash-before-marks"])
def test_a_re_sent_event_gets_the_same_decision_and_is_paid_once(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, marks_lost: bool
) -> None:
    """A producer's retry: the same bytes again at a later offset. The engine knows the decision
    it made for that event_id was committed: it publishes nothing and reserves nothing more.
    ``crash-before-marks``: the delivered marks are gone (a worker killed between a commit and
    its marks); the trigger's offset below the group's committed offset still tells."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=1) for name in ("events", "actions", "dlq")}
    world = _world_streaming_600_events(settings, topics["events"], seed=4)
    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"
    group = f"g-{period}"
    first = _run_until(_loop(settings, topics, world, client, period, group), 600)
    ledger = BudgetLedger(client, period, budget=20_000.0)
    spent = ledger.spent()
    actions = _read_all(settings, topics["actions"], first.decided)
    assert first.decided > 20 and spent > 0
    if marks_lost:
        ids = [json.loads(v)["action_id"] for v in actions]
        assert client.delete(*[f"nba:delivered:{i}" for i in ids]) == len(ids)

    # The same bytes of every decided trigger, produced again (new offsets, same event_id).
    decided = {json.loads(v)["trigger"]["event_id"] for v in actions}
    originals = [
        m
        for m in _read_messages(settings, topics["events"], 600)
        if json.loads(m.value())["event_id"] in decided
    ]
    producer = kafka_clients.producer(settings)
    for m in originals:
        producer.produce(topics["events"], key=m.key(), value=m.value(), headers=m.headers())
    assert producer.flush(30) == 0

    again = _run_until(_loop(settings, topics, world, client, period, group), len(originals))
    assert again.decided == 0 and again.republished == 0
    assert again.already_delivered == len(originals) == first.decided
    assert ledger.spent() == spent, "a re-sent event is paid once"
    on_topic = _read_messages(settings, topics["actions"], first.decided + 1, timeout_s=10)
    assert len(on_topic) == first.decided, "and the CRM reads each action once"
    client.close()


class _FailsFirstCommit:
    """A real transactional producer whose first commit_transaction is answered as the broker
    answers a transaction it must abort (the transaction itself is then really aborted)."""

    def __init__(self, producer: Producer, failed: list[bool]) -> None:
        self._producer = producer
        self._failed = failed

    def commit_transaction(self, *args: object) -> None:
        if not self._failed:
            self._failed.append(True)
            raise KafkaException(
                KafkaError(KafkaError._TRANSPORT, "injected", txn_requires_abort=True)
            )
        self._producer.commit_transaction(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._producer, name)


@pytest.mark.parametrize("overlap_min_events", [1, 100_000], ids=["overlapped", "awaited"])
def test_a_commit_failing_while_the_next_batch_is_decided_loses_and_repeats_nothing(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, overlap_min_events: int
) -> None:
    """A batch's transaction commits in a helper thread while the next batch is read, and
    decided (``overlapped``: every batch) or held until that commit lands (``awaited``). That
    commit fails: the batch is aborted, the next one (in no transaction yet) is dropped, and
    both are read again: their stored decisions are published as decided, each trigger once,
    each paid once."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=3) for name in ("events", "actions", "dlq")}
    world = _world_streaming_600_events(settings, topics["events"], seed=6)
    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"
    transactional_id = f"t-{uuid.uuid4().hex}"
    failed: list[bool] = []
    producer = RenewableProducer(
        lambda: _FailsFirstCommit(  # type: ignore[arg-type,return-value]
            kafka_clients.transactional_producer(settings, transactional_id), failed
        )
    )
    group = f"g-{period}"
    loop = _loop(
        settings,
        topics,
        world,
        client,
        period,
        group,
        producer=producer,
        batch_size=100,
        overlap_min_events=overlap_min_events,
    )
    with pytest.raises(KafkaException, match="injected"):  # as the worker's waiter sees it
        for _ in range(50):
            loop.run_once()
    total = _run_until(loop, 600)
    loop.close()
    assert total.consumed == 600, "both batches were read again"
    assert total.republished > 0, "the aborted and the dropped batches' decisions, as stored"
    expected = total.decided + total.republished
    on_topic = _read_messages(settings, topics["actions"], expected + 1, timeout_s=10)
    assert len(on_topic) == expected, "nothing of the aborted or dropped tries was published"
    published = [json.loads(m.value()) for m in on_topic]
    assert len({a["action_id"] for a in published}) == len(published), "each trigger once"
    ledger = BudgetLedger(client, period, budget=20_000.0)
    assert ledger.spent() == pytest.approx(sum(a["cost"] for a in published)), "paid once"
    client.close()


class _SlowCommit:
    """A real transactional producer whose every commit takes ``delay_s`` longer."""

    def __init__(self, producer: Producer, delay_s: float) -> None:
        self._producer = producer
        self._delay_s = delay_s

    def commit_transaction(self, *args: object) -> None:
        time.sleep(self._delay_s)
        self._producer.commit_transaction(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._producer, name)


def test_what_arrives_while_a_small_batch_awaits_the_last_commit_joins_that_batch(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: TopicFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A batch too small to be decided while the last one commits waits for that commit; the
    events that arrive meanwhile are decided with it, not left for a batch of their own. A slow
    commit is logged with its steps' times."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=1) for name in ("events", "actions", "dlq")}
    world = build_world(WorldConfig(n_customers=400, seed=8))
    lines = list(generate_events(world, days=0.5).json_lines(0, 15))
    sender = kafka_clients.producer(settings)

    def send(first: int, end: int) -> None:
        for customer, payload in lines[first:end]:
            sender.produce(topics["events"], key=customer.encode(), value=payload, headers=V1)
        assert sender.flush(10) == 0

    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"
    slow = RenewableProducer(
        lambda: _SlowCommit(  # type: ignore[arg-type,return-value]
            kafka_clients.transactional_producer(settings, f"t-{uuid.uuid4().hex}"), 1.5
        )
    )
    loop = _loop(settings, topics, world, client, period, f"g-{period}", producer=slow)
    send(0, 5)
    assert _run_until(loop, 5).consumed == 5  # decided, then its commit awaited
    send(5, 10)
    time.sleep(0.3)  # fetched by the consumer
    assert loop.run_once().consumed == 0  # these five decided; their commit (1.5 s) starts
    send(10, 12)
    time.sleep(0.3)
    late = threading.Timer(0.3, send, [12, 15])
    late.start()
    # Two events, too few to overlap: the five's commit is awaited, and the three sent during
    # that wait join the two.
    assert loop.run_once().consumed == 5
    late.join()
    with caplog.at_level(logging.WARNING):
        assert loop.run_once().consumed == 2 + 3
    assert re.search(
        r"transaction took 1\.\d s to commit \(offsets 0\.\d\d s, commit 1\.", caplog.text
    )
    loop.close()
    client.close()


def _read_messages(
    settings: Settings, topic: str, expected: int, timeout_s: float = 60.0
) -> list[Message]:
    """The topic's messages; ``expected`` of them, or (with a short timeout) what is there."""
    reader = kafka_clients.consumer(
        settings, f"r-{uuid.uuid4().hex}", **{"isolation.level": "read_committed"}
    )
    reader.subscribe([topic])
    found = drain(reader, expected, timeout_s)
    reader.close()
    return found


def _read_all(settings: Settings, topic: str, expected: int) -> list[bytes]:
    found = [m.value() for m in _read_messages(settings, topic, expected)]
    assert len(found) == expected
    return found


def test_a_refused_publish_aborts_the_transaction_and_the_fixed_topic_gets_each_decision_once(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory
) -> None:
    """The broker refuses every decision (the actions topic takes 200-byte records at most):
    the batch's transaction is aborted, nothing reaches a read_committed reader and nothing is
    committed. Once the topic is fixed, the same events are processed again: the decisions of
    the aborted batch are published as they were stored (same bytes, paid once), the rest are
    decided, and every trigger has one action message."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewTopic,
    )

    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=1) for name in ("events", "dlq")}
    topics["actions"] = f"actions-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "logger": LIBRDKAFKA_LOGGER})
    tiny = NewTopic(topics["actions"], 1, 1, config={"max.message.bytes": "200"})
    admin.create_topics([tiny])[topics["actions"]].result(timeout=30)
    world = _world_streaming_600_events(settings, topics["events"], seed=3)
    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"
    ledger = BudgetLedger(client, period, budget=20_000.0)
    group = f"g-{period}"
    try:
        refused = _loop(settings, topics, world, client, period, group)
        with pytest.raises(KafkaException):  # the log says why: MSG_SIZE_TOO_LARGE
            _run_until(refused, 600)
        refused.close()  # leaves the group; nothing of the aborted batch was committed
        held = ledger.spent()
        assert held > 0, "the aborted batch's decisions keep their reservations"
        assert _read_messages(settings, topics["actions"], 1, timeout_s=5) == []

        bigger = ConfigEntry(
            "max.message.bytes", "1048588", incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource("topic", topics["actions"], incremental_configs=[bigger])
        admin.incremental_alter_configs([resource])[resource].result(timeout=30)
        again = _run_until(_loop(settings, topics, world, client, period, group), 600)
        assert again.consumed == 600, "nothing was committed before"
        assert again.republished > 0, "the aborted batch's stored decisions, published now"
        published = [
            json.loads(v)
            for v in _read_all(settings, topics["actions"], again.decided + again.republished)
        ]
        assert len({a["action_id"] for a in published}) == len(published)
        assert ledger.spent() == pytest.approx(sum(a["cost"] for a in published))
        assert ledger.spent() >= held
    finally:
        admin.delete_topics([topics["actions"]])
        client.close()


@pytest.mark.parametrize(
    ("started_hours_ago", "spends_more"), [(12.0, True), (None, False)], ids=["on-the-curve", "own"]
)
def test_a_worker_restarted_mid_period_paces_on_the_period_curve(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: TopicFactory,
    started_hours_ago: float | None,
    spends_more: bool,
) -> None:
    """Half a day into a day's budget with half of it spent, a worker starts: told when the
    period began (NBA_PACING_START) it is on the curve and goes on spending; left to start the
    curve at its own start, it sees itself far ahead and spends nothing for the rest of the day."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topics = {name: make_topic(name, partitions=1) for name in ("events", "actions", "dlq")}
    world = _world_streaming_600_events(settings, topics["events"], seed=4)
    client = redis.Redis.from_url(redis_url)
    period = f"test-{uuid.uuid4().hex}"
    ledger = BudgetLedger(client, period, budget=20_000.0)
    assert ledger.reserve("earlier-today", "discount_offer", 10_000.0).granted
    start = None if started_hours_ago is None else time.time() - started_hours_ago * 3_600
    loop = _loop(settings, topics, world, client, period, f"g-{period}", 86_400.0, start)
    try:
        stats = _run_until(loop, 600)
    finally:
        loop.close()
        client.close()
    assert stats.consumed == 600 and stats.decided > 20
    assert (ledger.spent() > 10_000.0) == spends_more, ledger.spent()


def test_offsets_read_before_a_rebalance_are_refused_after_it(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    """What decision_loop.commit_group relies on: a second worker joins while a batch is read
    and takes one of its partitions; the group metadata of before the rebalance is refused by
    the broker (the batch is aborted and read again by the partitions' owner), whereas the
    metadata of after it would commit a partition the other worker now reads."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topic = make_topic("events", partitions=2)
    sender = kafka_clients.producer(settings)
    for partition in (0, 1):
        sender.produce(topic, value=b"{}", partition=partition)
    assert sender.flush(10) == 0
    group = f"g-{uuid.uuid4().hex}"
    first = kafka_clients.consumer(settings, group)
    first.subscribe([topic])
    read: list[Message] = []
    deadline = time.monotonic() + 30
    while not read and time.monotonic() < deadline:
        read = first.consume(10, 0.2)
    before = first.consumer_group_metadata()
    second = kafka_clients.consumer(settings, group)
    second.subscribe([topic])
    while len(first.assignment()) != 1 and time.monotonic() < deadline:
        second.consume(1, 0.1)  # both take part in the rebalance
        first.consume(1, 0.1)
    assert len(first.assignment()) == 1, "the rebalance gave each consumer one partition"
    offsets = [TopicPartition(topic, m.partition(), m.offset() + 1) for m in read]
    producer = kafka_clients.transactional_producer(settings, f"t-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    producer.begin_transaction()
    with pytest.raises(KafkaException) as refused:
        producer.send_offsets_to_transaction(offsets, before, 10)
    assert refused.value.args[0].txn_requires_abort(), refused.value
    producer.abort_transaction(10)
    producer.begin_transaction()
    producer.send_offsets_to_transaction(offsets, first.consumer_group_metadata(), 10)
    producer.commit_transaction(10)  # what the metadata of after the rebalance lets through
    first.close()
    second.close()
