"""The decision API against a running worker on the real broker, Redis and Feast (issue 22): a
POST is decided by the worker's engine and published on `nba-actions` once, a retry with the
same Idempotency-Key spends nothing more, lookups show what the engine holds, and every bad
request gets one JSON error shape and spends nothing. The campaign page is driven in Debian's
chromium (the last test)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer
from pydantic import SecretStr

from feedback.campaign_summary import label, money
from ingest.importer import imported_table
from stream_app import kafka_clients
from stream_app.api.keys import KeyStore
from stream_app.api.server import ApiParts, serving
from stream_app.decision_loop import DecisionLoop
from stream_app.ledger import BudgetLedger
from stream_app.redis_clients import redis_client
from stream_app.settings import Settings
from stream_app.worker import build_engine
from tests.conftest import TopicFactory, drain, free_port, renewable_producer, topic_factory
from tests.stream_app.test_project_worker_integration import (  # noqa: F401  # served: a fixture
    _materialize,
    served,
)

pytestmark = pytest.mark.integration
# The browser test's screenshot, kept for a person to look at (git ignores the folder).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Stack:
    """A worker's decide loop in a thread, the API beside it, two keys, and a read_committed
    reader of the actions topic."""

    settings: Settings
    api: ApiParts
    base: str
    decide_key: str
    read_key: str
    reader: Consumer
    customers: list[str]

    def post(self, body: Any, key: str | None = None, **headers: str) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **headers}
        if key is not None or "X-API-Key" not in headers:
            sent["X-API-Key"] = key if key is not None else self.decide_key
        return requests.post(f"{self.base}/v1/decisions", data=data, headers=sent, timeout=30)

    def get(self, path: str, key: str | None = None) -> requests.Response:
        sent = {"X-API-Key": key if key is not None else self.read_key}
        return requests.get(f"{self.base}{path}", headers=sent, timeout=60)

    def spent(self) -> float:
        return BudgetLedger(
            redis_client(self.settings), self.settings.budget_period, self.settings.budget
        ).spent()

    def actions(self, wait_s: float = 3.0) -> list[dict[str, Any]]:
        """Every action message that arrives within ``wait_s``."""
        return [json.loads(m.value()) for m in drain(self.reader, 10_000, wait_s)]


@pytest.fixture(scope="module")
def stack(
    served: Settings,  # noqa: F811  # the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
) -> Iterator[Stack]:
    with topic_factory(kafka_bootstrap) as make_topic:
        yield from _stack(served, tmp_path_factory, make_topic)


def _stack(
    served: Settings,  # noqa: F811  # the fixture's value, passed on
    tmp_path_factory: pytest.TempPathFactory,
    make_topic: TopicFactory,
) -> Iterator[Stack]:
    settings = served.model_copy(
        update={
            "topic_events": make_topic("events"),
            "topic_actions": make_topic("actions"),
            "topic_outcomes": make_topic("outcomes"),
            "topic_dlq": make_topic("dlq"),
            "consumer_group": f"g-{uuid.uuid4().hex[:8]}",
            "budget_period": f"p-{uuid.uuid4().hex[:8]}",
            "trigger_min_interval_s": 3_600.0,
            "api_port": free_port(),
            "api_keys_file": tmp_path_factory.mktemp("keys") / "api_keys.json",
            "batch_wait_s": 0.01,
            "holdout_share": 0.5,  # both arms, for the page's A/B readout
        }
    )
    keys = KeyStore(settings.keys_file)
    decide_key = keys.create("crm", ["decide", "read"])
    read_key = keys.create("lead", ["read"])
    producer = renewable_producer(settings)
    consumer = kafka_clients.consumer(settings, settings.consumer_group)
    consumer.subscribe([settings.topic_events])
    loop = DecisionLoop(
        consumer=consumer, producer=producer, engine=build_engine(settings, producer)
    )  # type: ignore[arg-type]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            loop.run_once()

    worker = threading.Thread(target=run, name="test-worker", daemon=True)
    worker.start()
    reader = kafka_clients.consumer(
        settings, f"r-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    reader.subscribe([settings.topic_actions])
    assert settings.imported_data is not None
    customers = imported_table(settings.imported_data, "customers")["customer_id"].astype(str)
    try:
        with serving(settings) as api:
            yield Stack(
                settings,
                api,
                f"http://{settings.api_host}:{settings.api_port}",
                decide_key,
                read_key,
                reader,
                customers.tolist(),
            )
    finally:
        stop.set()
        worker.join(timeout=30)
        loop.close()
        reader.close()


@pytest.fixture(scope="module")
def cluster_stack(
    served: Settings,  # noqa: F811  # the fixture imported above
    redis_cluster_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
) -> Iterator[Stack]:
    """The same stack with every Redis client on a Redis Cluster (features loaded into it)."""
    on_cluster = served.model_copy(
        update={
            "redis_url": redis_cluster_settings.redis_url
            or SecretStr(redis_cluster_settings.effective_redis_url()),
            "redis_cluster": True,
            "feature_project": f"c{uuid.uuid4().hex[:8]}",
        }
    )
    _materialize(on_cluster)
    with topic_factory(kafka_bootstrap) as make_topic:
        yield from _stack(on_cluster, tmp_path_factory, make_topic)


ON_BOTH = pytest.mark.parametrize("stack_on", ["stack", "cluster_stack"])


def _error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return dict(body["error"])


@ON_BOTH
def test_a_post_is_decided_by_the_worker_once_and_a_retry_returns_the_same_decision(
    stack_on: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    stack: Stack = request.getfixturevalue(stack_on)
    caplog.set_level(logging.DEBUG)
    customer = stack.customers[0]
    stack.actions(0.5)  # what earlier tests left on the topic
    before = stack.spent()
    first = stack.post(
        {"customer_id": customer, "context": {"case": "call-17"}}, **{"Idempotency-Key": "call-17"}
    )
    assert first.status_code == 201, first.text
    decided = first.json()
    assert decided["status"] == "created" and decided["delivered"] is True
    decision = decided["decision"]
    assert decision["customer_id"] == customer and decision["reasons"]
    assert decision["trigger"]["event_id"].startswith("api-")
    assert decided["talking_points"][0].startswith("Risk of leaving:")
    again = stack.post({"customer_id": customer}, **{"Idempotency-Key": "call-17"})
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["decision"] == decision
    on_topic = [a for a in stack.actions() if a["customer_id"] == customer]
    assert [a["action_id"] for a in on_topic] == [decision["action_id"]]  # once, for both
    assert stack.spent() == pytest.approx(before + decision["cost"])  # and paid once
    latest = stack.get(f"/v1/customers/{customer}/decision").json()
    assert latest["decision"] == decision and latest["delivered"] is True
    assert stack.get(f"/v1/decisions/{decision['action_id']}").json()["decision"] == decision
    features = stack.get(f"/v1/customers/{customer}/features").json()["features"]
    assert features["customer_id"] == customer and features["cold_start"] is False
    # The contact rule: no second decision within the interval, whatever the key.
    soon = stack.post({"customer_id": customer}, **{"Idempotency-Key": "call-18"})
    assert _error(soon, 409, "decided_recently")["details"]["latest"] == decision
    # An Idempotency-Key is one request: reused for another customer, it is refused.
    reused = stack.post({"customer_id": stack.customers[1]}, **{"Idempotency-Key": "call-17"})
    _error(reused, 409, "idempotency_key_reused")
    assert stack.decide_key not in caplog.text and stack.read_key not in caplog.text


@ON_BOTH
def test_two_requests_at_once_for_one_customer_get_one_decision_at_once(
    stack_on: str, request: pytest.FixtureRequest
) -> None:
    """Both pass the API's contact check before the worker has seen either; the worker decides
    one and points the other at it, so neither waits out the timeout (a 202)."""
    stack: Stack = request.getfixturevalue(stack_on)
    customer = stack.customers[-1]
    stack.actions(0.5)
    before = stack.spent()
    start = threading.Barrier(2)

    def ask(key: str) -> tuple[requests.Response, float]:
        start.wait()
        began = time.monotonic()
        answer = stack.post({"customer_id": customer}, **{"Idempotency-Key": key})
        return answer, time.monotonic() - began

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, ["race-a", "race-b"]))
    by_status = {a.status_code: a for a, _ in answers}
    assert sorted(by_status) == [201, 409], [a.text for a, _ in answers]
    decision = by_status[201].json()["decision"]
    assert _error(by_status[409], 409, "decided_recently")["details"]["latest"] == decision
    assert max(took for _, took in answers) < stack.settings.api_decision_timeout_s
    on_topic = [a for a in stack.actions() if a["customer_id"] == customer]
    assert [a["action_id"] for a in on_topic] == [decision["action_id"]]
    assert stack.spent() == pytest.approx(before + decision["cost"])


def test_an_unknown_customer_is_offered_a_cold_start_decision(stack: Stack) -> None:
    before = stack.spent()
    unknown = stack.post({"customer_id": "nobody-42"}, **{"Idempotency-Key": "nobody-1"})
    offer = _error(unknown, 404, "unknown_customer")["details"]["cold_start_offer"]
    assert stack.spent() == before
    _error(stack.get("/v1/customers/nobody-42/features"), 404, "unknown_customer")
    _error(stack.get("/v1/customers/nobody-42/decision"), 404, "no_decision")
    cold = stack.post(offer["request"], **{"Idempotency-Key": "nobody-2"})
    assert cold.status_code == 201, cold.text
    assert cold.json()["decision"]["customer_id"] == "nobody-42"


def test_bad_requests_get_one_json_error_and_spend_nothing(stack: Stack) -> None:
    customer = stack.customers[2]
    stack.actions(0.5)
    before = stack.spent()
    _error(stack.post(b'{"customer_id": "' + customer.encode()), 400, "malformed_json")
    _error(stack.post({"customer_id": customer, "pad": "x" * 20_000}), 413, "too_large")
    _error(stack.post({"customer_id": "no spaces allowed"}), 422, "invalid_request")
    _error(stack.post({"customer_id": customer}, key=""), 401, "unauthorized")
    _error(stack.post({"customer_id": customer}, key="nba_0000_wrong"), 401, "unauthorized")
    _error(stack.post({"customer_id": customer}, key=stack.read_key), 403, "forbidden")
    _error(stack.get("/v1/campaign/budget?amount=-5"), 422, "budget_out_of_range")
    _error(stack.get("/v1/campaign/budget?amount=1e15"), 422, "budget_out_of_range")
    _error(stack.get("/v1/campaign/budget?amount=lots"), 422, "invalid_request")
    _error(stack.get("/v1/campaign/summary", key="nope"), 401, "unauthorized")
    _error(stack.get("/v1/no-such-route"), 404, "not_found")
    assert stack.spent() == before
    assert [a for a in stack.actions() if a["customer_id"] == customer] == []


def test_health_readiness_and_the_openapi_document(stack: Stack) -> None:
    assert requests.get(f"{stack.base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{stack.base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    document = requests.get(f"{stack.base}/openapi.json", timeout=5).json()
    assert {"/v1/decisions", "/v1/customers/{customer_id}/decision"} <= set(document["paths"])


def test_the_campaign_numbers_come_from_the_log_and_the_current_model(stack: Stack) -> None:
    customer = stack.customers[3]
    decided = stack.post({"customer_id": customer}, **{"Idempotency-Key": "summary-1"})
    assert decided.status_code == 201, decided.text
    # The page follows the topic (and recomputes every 2 s): it catches up with the ledger.
    deadline = time.monotonic() + 20
    while True:
        summary = stack.get("/v1/campaign/summary")
        assert summary.status_code == 200, summary.text
        spend = summary.json()["spend"]
        if spend["spend"] == pytest.approx(stack.spent()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert spend["spend"] == pytest.approx(stack.spent())  # the log and the ledger agree
    assert spend["decisions"] >= 1 and spend["budget"] == stack.settings.budget
    assert summary.json()["lift"]["headline"] == "No outcomes yet"
    curve = stack.get("/v1/campaign/budget-curve").json()
    assert curve["base"] == len(stack.customers) and curve["spend"][0] == 0.0
    values = curve["incremental_value"]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    half = curve["max_useful_budget"] / 2
    at = stack.get(f"/v1/campaign/budget?amount={half}").json()
    assert 0 < at["customers"] < curve["customers"][-1] and at["spend"] <= half


def _send_outcomes(stack: Stack, decisions: list[dict[str, Any]]) -> None:
    """A renewal or a churn for each decision, as billing would report it."""
    producer = kafka_clients.producer(stack.settings)
    for k, decision in enumerate(decisions):
        outcome = {
            "customer_id": decision["customer_id"],
            "outcome_type": "renewed" if k % 3 else "churned",
            "value": 1_000.0,
            "occurred_at": datetime.now(UTC).isoformat(),
            "action_id": decision["action_id"],
        }
        producer.produce(
            stack.settings.topic_outcomes,
            key=decision["customer_id"].encode(),
            value=json.dumps(outcome).encode(),
        )
    producer.flush(30)


def _summary_with_outcomes(stack: Stack, joined: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        summary: dict[str, Any] = stack.get("/v1/campaign/summary").json()
        if summary["outcomes_joined"] >= joined or time.monotonic() > deadline:
            return summary
        time.sleep(0.5)


@pytest.mark.browser
def test_the_campaign_page_in_a_browser_shows_the_apis_numbers(stack: Stack) -> None:
    from playwright.sync_api import sync_playwright

    decided = [
        stack.post({"customer_id": c}, **{"Idempotency-Key": f"page-{c}"}).json()["decision"]
        for c in stack.customers[10:50]
    ]
    _send_outcomes(stack, decided)
    summary = _summary_with_outcomes(stack, len(decided))
    assert summary["qini"] is not None and summary["lift"]["status"] != "no data", summary
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by deploy/bootstrap-system.sh"
    looked_up = decided[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{stack.base}/ui")
        page.fill("#key", stack.read_key)
        page.click("#load")
        page.wait_for_selector("body[data-loaded=true]", timeout=60_000)
        lift = page.inner_text("#lift-headline")
        qini_paths = page.locator("#qini path").count()
        # The slider moved to a third of its range, as a lead would drag it.
        amount = page.eval_on_selector(
            "#budget",
            "s => { s.value = Math.round(s.max / 3); s.dispatchEvent(new Event('change'));"
            " return Number(s.value); }",
        )
        page.wait_for_function(
            "amount => document.getElementById('budget-value').textContent.startsWith("
            "'Budget $' + amount.toLocaleString('en-US'))",
            arg=amount,
        )
        budget_text = page.inner_text("#budget-value")
        page.fill("#customer", looked_up["customer_id"])
        page.click("#lookup")
        page.wait_for_selector("#customer-action")
        action_text = page.inner_text("#customer-action")
        points = page.locator("#talking-points li").all_inner_texts()
        text = page.inner_text("body")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "campaign-page.png"), full_page=True)
        browser.close()
    assert lift == summary["lift"]["headline"]
    assert qini_paths == 2  # the model's curve and random targeting
    at = stack.get(f"/v1/campaign/budget?amount={amount}").json()
    assert budget_text == (
        f"Budget {money(at['budget'])}: expected extra value {money(at['incremental_value'])}"
    )
    latest = stack.get(f"/v1/customers/{looked_up['customer_id']}/decision").json()
    assert action_text.startswith(label(latest["decision"]["action"]))
    assert points == latest["talking_points"]
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text), "a snake_case name reached the page"
    assert not re.search(r"\d\.\d{4,}", text), "an unformatted number reached the page"
