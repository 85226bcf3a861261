"""Parsing, DLQ reasons, triggers and action messages (no servers)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from policies.arms import ArmConfig
from policies.decide import PolicyConfig, Scores, decide_batch
from policies.rules import ContactState
from stream_app.messages import DECISION_REQUESTED, NbaAction, action_id_for
from stream_app.pipeline import (
    Limits,
    RawMessage,
    build_actions,
    parse_events,
    select_triggers,
    superseded_requests,
)

V1 = {"schema-version": b"1"}
LIMITS = Limits(64_000)


def event(
    customer: str = "C1",
    kind: str = "login",
    event_id: str = "e1",
    at: datetime | None = None,
    properties: dict[str, object] | None = None,
) -> bytes:
    when = at or datetime(2026, 1, 1, tzinfo=UTC)
    body = {
        "event_id": event_id,
        "customer_id": customer,
        "event_type": kind,
        "occurred_at": when.isoformat(),
        "properties": properties or {},
    }
    return json.dumps(body).encode()


def nested(depth: int) -> bytes:
    inner = "[" * depth + "]" * depth
    body = event().decode().replace('"properties": {}', f'"properties": {{"x": {inner}}}')
    return body.encode()


def raw(
    value: bytes | None,
    key: bytes | None = b"C1",
    headers: dict[str, bytes] | None = None,
    offset: int = 0,
) -> RawMessage:
    return RawMessage("events", 0, offset, key, value, V1 if headers is None else headers, 0)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (raw(b"{not json"), "invalid_json"),
        (raw(b"\xff\xfe"), "invalid_json"),
        (raw(json.dumps({"event_id": "e", "customer_id": "C1"}).encode()), "invalid_schema"),
        (raw(event(kind="teleported")), "unknown_event_type"),
        (
            raw(event().replace(b"2026-01-01T00:00:00+00:00", b"2026-01-01T00:00:00")),
            "invalid_schema",
        ),
        (raw(b"x" * 70_000), "too_large"),
        (raw(event(properties={"n": 1}).replace(b'"n": 1', b'"n": NaN')), "invalid_json"),
        (raw(event(properties={"n": 1}).replace(b'"n": 1', b'"n": -Infinity')), "invalid_json"),
        (raw(nested(40)), "too_deep"),
        (raw(nested(5_000)), "too_deep"),  # past the parser's own recursion limit
        (raw(event(at=datetime(2099, 1, 1, tzinfo=UTC))), "from_the_future"),
        (raw(event(kind="nps_response", properties={"score": 99})), "invalid_schema"),
        (raw(event(kind="support_ticket", properties={"severity": -3})), "invalid_schema"),
        (raw(event(kind="support_ticket", properties={"severity": "high"})), "invalid_schema"),
        (raw(None), "empty"),
        (raw(event(), headers={}), "missing_header"),
        (raw(event(), headers={"schema-version": b"9"}), "unsupported_schema_version"),
        (raw(event(), key=b"C2"), "key_mismatch"),
    ],
)
def test_poison_messages_become_dlq_records_with_a_reason(message: RawMessage, code: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    valid, rejected = parse_events([raw(event(event_id="ok")), message], LIMITS, now)
    assert [e.event_id for _, e in valid] == ["ok"], "the good event still counts"
    assert len(rejected) == 1 and rejected[0].error_code == code, rejected
    record = rejected[0]
    kept = base64.b64decode(record.original_base64)
    original = message.value or b""
    assert record.original_size_bytes == len(original)
    assert record.original_sha256 == hashlib.sha256(original).hexdigest()
    assert record.original_truncated == (len(original) > LIMITS.max_bytes)
    assert original.startswith(kept) and len(kept) == min(len(original), LIMITS.max_bytes)
    assert record.source_offset == message.offset


def test_a_dlq_record_always_fits_the_topic_whatever_the_original() -> None:
    huge = raw(b"{" * 900_000)
    _, [record] = parse_events([huge], Limits(900_000))
    assert record.original_truncated and record.original_size_bytes == 900_000
    assert len(record.model_dump_json()) < 1_000_000 * 0.9, "below Kafka's 1 MB default"


def test_properties_in_range_and_unknown_properties_pass() -> None:
    fine = [
        raw(event(kind="nps_response", properties={"score": 10, "comment": "ok"})),
        raw(event(kind="support_ticket", event_id="e2", properties={"severity": 1}), offset=1),
    ]
    valid, rejected = parse_events(fine, LIMITS, datetime(2026, 1, 1, tzinfo=UTC))
    assert len(valid) == 2 and not rejected


def test_clock_skew_within_the_limit_is_accepted() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    soon = raw(event(at=now + timedelta(seconds=299)))
    late = raw(event(at=now + timedelta(seconds=301)), offset=1)
    valid, rejected = parse_events([soon, late], Limits(64_000, max_future_s=300), now)
    assert [r.offset for r, _ in valid] == [0]
    assert [r.error_code for r in rejected] == ["from_the_future"]


def test_one_trigger_per_customer_and_the_minimum_interval() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        raw(event("C1", "feature_used", "a", t0)),
        raw(event("C1", "login", "b", t0), offset=1),
        raw(event("C1", "support_ticket", "c", t0), offset=2),
        raw(event("C2", "login", "d", t0), key=b"C2", offset=3),
        raw(event("C3", "login", "e", t0 + timedelta(hours=1)), key=b"C3", offset=4),
    ]
    valid, _ = parse_events(messages, LIMITS, t0 + timedelta(days=1))
    last = {"C3": (t0.timestamp(), "earlier")}
    chosen = select_triggers(valid, last, frozenset({"login", "support_ticket"}), 86_400)
    assert [e.event_id for _, e in chosen] == ["b", "d"]
    replayed = select_triggers(
        valid, {"C3": (t0.timestamp() + 3600, "e")}, frozenset({"login"}), 86_400
    )
    assert [e.event_id for _, e in replayed] == ["b", "d", "e"], (
        "the recorded trigger itself passes"
    )


def test_a_request_left_undecided_points_at_the_decision_that_answers_its_customer() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        raw(event("C1", DECISION_REQUESTED, "r1", t0)),
        raw(event("C1", DECISION_REQUESTED, "r2", t0), offset=1),  # same batch, same customer
        raw(event("C1", DECISION_REQUESTED, "r1", t0), offset=2),  # r1 re-sent
        raw(event("C2", DECISION_REQUESTED, "r3", t0), key=b"C2", offset=3),  # decided lately
        raw(event("C3", "login", "l1", t0), key=b"C3", offset=4),
        raw(event("C3", "login", "l2", t0), key=b"C3", offset=5),  # not a request: no answer due
    ]
    limits = Limits(64_000, event_types=frozenset({DECISION_REQUESTED, "login"}))
    valid, _ = parse_events(messages, limits, t0 + timedelta(days=1))
    last = {"C2": (t0.timestamp() - 60, "earlier")}
    triggers = frozenset({DECISION_REQUESTED, "login"})
    chosen = select_triggers(valid, last, triggers, 86_400)
    assert [e.event_id for _, e in chosen] == ["r1", "l1"]
    assert superseded_requests(valid, chosen, last) == {
        action_id_for("events", "r2"): action_id_for("events", "r1"),
        action_id_for("events", "r3"): action_id_for("events", "earlier"),
    }


def test_action_ids_follow_the_event_identity_not_its_offset() -> None:
    assert action_id_for("events", "e9") == action_id_for("events", "e9")
    assert action_id_for("events", "e9") != action_id_for("events", "e10")
    assert action_id_for("events", "e9") != action_id_for("other-events", "e9")
    valid, _ = parse_events(
        [raw(event("C1", "login", "e1")), raw(event("C2", "login", "e2"), key=b"C2", offset=1)],
        LIMITS,
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    resent, _ = parse_events(
        [raw(event("C1", "login", "e1"), offset=7)], LIMITS, datetime(2026, 1, 1, tzinfo=UTC)
    )
    n, a = 2, 6
    uplift = np.zeros((n, a))
    uplift[:, 1] = 0.3
    scores = Scores(
        ["C1", "C2"],
        ["e1", "e2"],
        np.array([0.5, 0.5]),
        uplift,
        np.zeros((n, a)),
        np.array([50_000.0, 50_000.0]),
        np.array([0.5, 0.5]),
    )
    decisions = decide_batch(
        scores,
        ContactState.fresh(n),
        PolicyConfig(arms=ArmConfig(holdout_share=0, explore_share=0)),
        1e6,
    )
    actions = build_actions(
        decisions, valid, PolicyConfig().catalog, "m1", "2026-01-01", datetime.now(UTC)
    )
    assert [x.action for x in actions] == ["account_manager_call", "account_manager_call"]
    for action in actions:
        assert NbaAction.model_validate_json(action.model_dump_json()) == action
        assert action.channel == "phone" and action.arm == "treatment" and action.reasons
    again = build_actions(
        decisions,
        [resent[0], valid[1]],
        PolicyConfig().catalog,
        "m1",
        "2026-01-01",
        datetime.now(UTC),
    )
    assert again[0].action_id == actions[0].action_id, "a re-sent copy at another offset"
    assert again[0].trigger.offset == 7 and actions[0].trigger.offset == 0


def test_a_projects_own_event_types_are_accepted_and_the_rest_go_to_the_dlq() -> None:
    shop = Limits(64_000, event_types=frozenset({"unsubscribe", "cart_abandoned"}))
    raws = [raw(event(kind="unsubscribe", event_id="a")), raw(event(kind="login", event_id="b"))]
    valid, [rejected] = parse_events(raws, shop)
    assert [e.event_type for _, e in valid] == ["unsubscribe"]
    assert rejected.error_code == "unknown_event_type"
    assert "cart_abandoned, unsubscribe" in rejected.error_message
    _, [bad_form] = parse_events([raw(event(kind="Un Subscribe"))], shop)
    assert bad_form.error_code == "invalid_schema"
