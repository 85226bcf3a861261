"""Parsing, DLQ reasons, triggers and action messages (no servers)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from policies.arms import ArmConfig
from policies.decide import PolicyConfig, Scores, decide_batch
from policies.rules import ContactState
from stream_app.messages import NbaAction, Trigger, action_id_for
from stream_app.pipeline import RawMessage, build_actions, parse_events, select_triggers

V1 = {"schema-version": b"1"}


def event(
    customer: str = "C1", kind: str = "login", event_id: str = "e1", at: datetime | None = None
) -> bytes:
    when = at or datetime(2026, 1, 1, tzinfo=UTC)
    body = {
        "event_id": event_id,
        "customer_id": customer,
        "event_type": kind,
        "occurred_at": when.isoformat(),
        "properties": {},
    }
    return json.dumps(body).encode()


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
        (raw(None), "empty"),
        (raw(event(), headers={}), "missing_header"),
        (raw(event(), headers={"schema-version": b"9"}), "unsupported_schema_version"),
        (raw(event(), key=b"C2"), "key_mismatch"),
    ],
)
def test_poison_messages_become_dlq_records_with_a_reason(message: RawMessage, code: str) -> None:
    valid, rejected = parse_events([raw(event(event_id="ok")), message], max_bytes=64_000)
    assert [e.event_id for _, e in valid] == ["ok"], "the good event still counts"
    assert len(rejected) == 1 and rejected[0].error_code == code
    assert base64.b64decode(rejected[0].original_base64) == (message.value or b"")
    assert rejected[0].source_offset == message.offset


def test_one_trigger_per_customer_and_the_minimum_interval() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        raw(event("C1", "feature_used", "a", t0)),
        raw(event("C1", "login", "b", t0), offset=1),
        raw(event("C1", "support_ticket", "c", t0), offset=2),
        raw(event("C2", "login", "d", t0), key=b"C2", offset=3),
        raw(event("C3", "login", "e", t0 + timedelta(hours=1)), key=b"C3", offset=4),
    ]
    valid, _ = parse_events(messages, 64_000)
    last = {"C3": (t0.timestamp(), "earlier")}
    chosen = select_triggers(valid, last, frozenset({"login", "support_ticket"}), 86_400)
    assert [e.event_id for _, e in chosen] == ["b", "d"]
    replayed = select_triggers(
        valid, {"C3": (t0.timestamp() + 3600, "e")}, frozenset({"login"}), 86_400
    )
    assert [e.event_id for _, e in replayed] == ["b", "d", "e"], (
        "the recorded trigger itself passes"
    )


def test_action_ids_are_deterministic_and_messages_valid() -> None:
    trigger = Trigger(topic="events", partition=2, offset=41, event_id="e9")
    assert action_id_for(trigger, "policy-1") == action_id_for(trigger, "policy-1")
    assert action_id_for(trigger, "policy-1") != action_id_for(trigger, "policy-2")
    valid, _ = parse_events(
        [raw(event("C1", "login", "e1")), raw(event("C2", "login", "e2"), key=b"C2", offset=1)],
        64_000,
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
