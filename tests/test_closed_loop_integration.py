"""The loop closed end to end through Kafka (issue 9), on a simulated world with known truth.

One engine run: a trigger event per customer goes through the real broker, the decision loop
(ONNX bundle, policy with a holdout and an exploration arm, Redis ledger) publishes to an
actions topic, outcomes come back on an outcomes topic (with planted bad input), and the
report, the off-policy estimates and the promotion rule are computed from those topics.

The world has stronger action effects than the default and one plan (contract values without
the enterprise tail): with the default world's heavy-tailed values, a $900-per-decision
difference between two policies needs far more than this test's 16,000 decisions to be
declared (model_export/README.md), and the promotion test would only ever say "not proven".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from prometheus_client import CollectorRegistry

from feedback.champion_challenger import (
    candidate_decisions,
    evaluate_candidates,
    off_policy_log,
    promote_if_better,
)
from feedback.log_training import experiment_from_log
from feedback.readout import Feedback
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer
from model_export.training import train_models
from nba.commands.feedback import load_feedback
from nba.replay import EVENT_SCHEMA_VERSION
from nba.topic_reader import read_topic
from policies.arms import ArmConfig
from policies.catalog import default_catalog
from policies.decide import PolicyConfig
from policies.pacing import Pacer, PacingConfig
from simulator.config import scaled_effects, validated
from simulator.datasets import randomized_experiment
from simulator.events import outcome_events
from simulator.world import World, build_world
from stream_app import kafka_clients
from stream_app.decision_loop import DecisionLoop, LoopSettings
from stream_app.ledger import BudgetLedger
from stream_app.metrics import EngineMetrics
from stream_app.scorer import FeatureScoreSource, ServedModel, snapshot_reader
from stream_app.settings import Settings, load_settings
from tests.conftest import renewable_producer, topic_factory

pytestmark = pytest.mark.integration

CUSTOMERS = 16_000
# One fixed experiment (the arm and exploration draws): every run checks the same draw, so a
# failure means the pipeline changed, not that a 95% interval missed by chance, as one in
# twenty draws must. How often the intervals cover over many draws is measured by
# benchmarks/ope_coverage.py (logs made as the stream makes them), not asserted here.
EXPERIMENT = "closed-loop-test"
HOLDOUT, EXPLORE = 0.2, 0.3
STRONG = scaled_effects(2.5)
# Planted bad input on the outcomes topic.
DUPLICATED, UNKNOWN, EARLY, UNREADABLE = 25, 7, 3, 2


@dataclass
class Run:
    world: World
    registry: Registry
    settings: Settings
    loop: DecisionLoop
    metrics: CollectorRegistry
    features: dict[str, pd.DataFrame]
    feedback: Feedback


def _train(world: World, registry: Registry, root: Path) -> None:
    """``good``: trained on the randomized experiment; ``flipped``: trained on inverted outcomes,
    so it targets exactly the wrong customers."""
    experiment = randomized_experiment(world)
    names = default_catalog().names
    for version, frame in (
        ("good", experiment),
        ("flipped", experiment.assign(retained=~experiment["retained"].astype(bool))),
    ):
        trained = train_models(frame, names, "s", 0)
        export_run(save_run(trained, root / f"run-{version}", ""), registry, version)


def _send_triggers(settings: Settings, customers: pd.Series, prefix: str) -> None:
    """One login (a trigger) per customer."""
    now = datetime.now(UTC).isoformat()
    ids = customers.astype(str).tolist()
    events = [
        {"event_id": f"{prefix}-{c}", "customer_id": c, "event_type": "login", "occurred_at": now}
        for c in ids
    ]
    _send(
        settings,
        settings.topic_events,
        [json.dumps(e).encode() for e in events],
        [c.encode() for c in ids],
    )


def _send(settings: Settings, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    producer = kafka_clients.producer(settings)
    for key, value in zip(keys, values, strict=True):
        producer.produce(
            topic, key=key, value=value, headers=[("schema-version", EVENT_SCHEMA_VERSION)]
        )
        producer.poll(0)
    assert producer.flush(60) == 0


def _decide_all(loop: DecisionLoop, expected: int) -> None:
    consumed = 0
    for _ in range(2_000):
        consumed += loop.run_once().consumed
        if consumed >= expected:
            return
    raise AssertionError(f"consumed {consumed} of {expected} events")


def _emit_outcomes(settings: Settings, world: World, topic: str) -> None:
    """The world's outcomes of every published decision, dated after it, plus bad input."""
    actions = [json.loads(v) for v in read_topic(settings, settings.topic_actions)]
    index = {c: i for i, c in enumerate(world.customers["customer_id"].astype(str))}
    names = list(default_catalog().names)
    rows = np.array([index[a["customer_id"]] for a in actions], dtype=np.int64)
    chosen = np.array([names.index(a["action"]) for a in actions], dtype=np.int64)
    ids: list[str | None] = [a["action_id"] for a in actions]
    messages = outcome_events(world, rows, chosen, ids, as_of=datetime.now(UTC))
    messages += messages[:DUPLICATED]
    messages += [{**m, "action_id": f"unknown-{k}"} for k, m in enumerate(messages[:UNKNOWN])]
    messages += [
        {**m, "outcome_type": "complained", "occurred_at": "2020-01-01T00:00:00+00:00"}
        for m in messages[:EARLY]
    ]
    values = [json.dumps(m).encode() for m in messages] + [b"{oops"] * UNREADABLE
    _send(settings, topic, values, [b"k"] * len(values))


@pytest.fixture(scope="module")
def run(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("closed-loop")
    world = build_world(
        validated(
            n_customers=CUSTOMERS,
            seed=11,
            baseline_churn_rate=0.25,
            actions=STRONG,
            plan_shares={"starter": 0.0, "growth": 1.0, "enterprise": 0.0},
        )
    )
    registry = Registry(root / "registry")
    _train(world, registry, root)
    registry.promote("flipped")  # the champion that logged the decisions is the bad model
    with topic_factory(kafka_bootstrap) as make_topic:
        topics = {k: make_topic(k) for k in ("events", "actions", "outcomes", "dlq")}
        engine = _run_engine(kafka_bootstrap, redis_url, world, registry, topics)
        yield engine
        engine.loop.close()


def _run_engine(
    bootstrap: str, redis_url: str, world: World, registry: Registry, topics: dict[str, str]
) -> Run:
    run_id = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_bootstrap=bootstrap,
        topic_events=topics["events"],
        topic_actions=topics["actions"],
        topic_outcomes=topics["outcomes"],
        topic_dlq=topics["dlq"],
    )
    metrics_registry = CollectorRegistry()
    metrics = EngineMetrics.create(metrics_registry)
    catalog = default_catalog()
    served = ServedModel(registry, catalog, reload_s=0.0, metrics=metrics)
    features = {"frame": world.customers}
    source = FeatureScoreSource(
        lambda ids: snapshot_reader(features["frame"])(ids), served, world.customers
    )
    client = redis.Redis.from_url(redis_url)
    consumer = kafka_clients.consumer(settings, f"engine-{run_id}")
    consumer.subscribe([topics["events"]])
    loop = DecisionLoop(
        settings=LoopSettings(
            events_topic=topics["events"],
            actions_topic=topics["actions"],
            dlq_topic=topics["dlq"],
            trigger_types=frozenset({"login"}),
            min_interval_s=0.0,
            max_message_bytes=64_000,
            budget_period=f"closed-loop-{run_id}",
        ),
        policy=PolicyConfig(
            catalog=catalog,
            arms=ArmConfig(experiment=EXPERIMENT, holdout_share=HOLDOUT, explore_share=EXPLORE),
        ),
        scores=source.scores,
        contacts=source.contacts,
        consumer=consumer,
        producer=renewable_producer(settings),
        redis_client=client,
        ledger=BudgetLedger(client, f"closed-loop-{run_id}", budget=1e9),
        pacing=PacingConfig(budget=1e9, period_s=3_600.0),
        pacer=Pacer(0.5),
        metrics=metrics,
        model_version=lambda: served.version,
    )
    _send_triggers(settings, world.customers["customer_id"], "first")
    _decide_all(loop, CUSTOMERS)
    _emit_outcomes(settings, world, topics["outcomes"])
    return Run(world, registry, settings, loop, metrics_registry, features, load_feedback(settings))


def _true_value(
    world: World, snapshot: pd.DataFrame, action: np.ndarray, cost: np.ndarray
) -> float:
    index = pd.Index(world.customers["customer_id"].astype(str))
    rows = index.get_indexer(snapshot["customer_id"].astype(str))
    earned = world.retained[rows, action] * world.value[rows] + world.expansion[rows, action]
    return float((earned - cost).mean())


def test_readout_lift_ci_covers_the_true_lift_of_the_served_policy(run: Run) -> None:
    report = run.feedback.report()
    overall = report["overall"]
    treated = run.feedback.joined[run.feedback.joined["arm"] == "treatment"]
    index = pd.Index(run.world.customers["customer_id"].astype(str))
    rows = index.get_indexer(treated["customer_id"].astype(str))
    chosen = treated["action"].map(list(default_catalog().names).index).to_numpy()
    true_lift = float(
        (run.world.retained[rows, chosen].astype(float) - run.world.retained[rows, 0]).mean()
    )
    low, high = overall["lift_abs_ci"]
    assert low <= true_lift <= high, (true_lift, low, high)
    assert report["arms"]["holdout"] > 0.15 * CUSTOMERS
    assert set(report["by_action"]) <= set(default_catalog().names)
    assert report["model_versions"] == ["flipped"]


def test_bad_outcomes_are_counted_and_left_out(run: Run) -> None:
    quality = run.feedback.report()["data_quality"]
    assert quality["duplicate_outcomes"] == DUPLICATED
    assert quality["outcomes_for_unknown_actions"] == UNKNOWN
    assert quality["outcomes_before_decision"] == EARLY
    assert quality["unreadable_messages"]["outcomes"] == UNREADABLE
    assert quality["decisions_awaiting_outcome"] == 0
    assert len(run.feedback.joined) == CUSTOMERS


def test_dr_estimate_of_a_second_policy_covers_its_true_value(run: Run) -> None:
    catalog = default_catalog()
    data = off_policy_log(
        run.feedback.joined, run.world.customers, BundleScorer(run.registry, catalog), catalog
    )
    found = evaluate_candidates(data, run.registry, catalog, {"good": "good"})["good"]
    target = candidate_decisions(
        data, BundleScorer(run.registry, catalog, "good"), catalog, data.spend
    )
    assert data.unavailable[:, catalog.names.index("account_manager_call")].any(), (
        "the calls ran out during the run: the candidate is evaluated without them from then on"
    )
    truth = _true_value(run.world, data.snapshot, target.action, target.cost)
    dr = found["dr"]
    assert dr.ci_low <= truth <= dr.ci_high, (truth, dr.summary())


def test_better_challenger_promoted_worse_kept_out_then_served_without_restart(
    run: Run,
) -> None:
    catalog = default_catalog()
    data = off_policy_log(
        run.feedback.joined, run.world.customers, BundleScorer(run.registry, catalog), catalog
    )
    better = promote_if_better(run.registry, catalog, data, "good", margin=0.0)
    assert better.promoted and run.registry.champion() == "good", better
    worse = promote_if_better(run.registry, catalog, data, "flipped", margin=0.0)
    assert not worse.promoted and run.registry.champion() == "good", worse

    # The running loop picks the promoted model up at its next batch; planted drift in the
    # features it reads raises the PSI gauge of the drifted feature.
    drifted = run.world.customers.head(3_000)
    run.features["frame"] = drifted.assign(logins_30d=drifted["logins_30d"] * 0 + 1)
    _send_triggers(run.settings, drifted["customer_id"], "second")
    _decide_all(run.loop, len(drifted))
    actions = [json.loads(v) for v in read_topic(run.settings, run.settings.topic_actions)]
    second = {a["model_version"] for a in actions if a["trigger"]["event_id"].startswith("second")}
    assert second == {"good"}
    sample = run.metrics.get_sample_value
    assert sample("nba_model_reloads_total", {"result": "loaded"}) == 1.0
    assert sample("nba_engine_info", {"model_version": "good", "policy_version": "policy-1"})
    assert (sample("nba_feature_psi", {"feature": "logins_30d"}) or 0.0) > 0.25
    assert (sample("nba_feature_psi", {"feature": "seats"}) or 1.0) < 0.1


def test_operator_commands_read_the_same_topics(run: Run, tmp_path: Path) -> None:
    """`nba experiment report`, `nba ope` and `nba report` as an operator runs them."""
    run.world.customers.to_parquet(tmp_path / "customers.parquet")
    env = {
        "PATH": "/usr/bin:/bin",
        "NBA_KAFKA_BOOTSTRAP": run.settings.effective_kafka_bootstrap(),
        "NBA_TOPIC_ACTIONS": run.settings.topic_actions,
        "NBA_TOPIC_OUTCOMES": run.settings.topic_outcomes,
        "NBA_MODEL_REGISTRY": str(run.registry.root),
    }

    def nba(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "nba", *argv],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done

    text = nba("experiment", "report", "--out", str(tmp_path / "report.json")).stdout
    assert "overall" in text and "guardrails" in text and "duplicate_outcomes" in text
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["data_quality"]["outcomes_for_unknown_actions"] == UNKNOWN
    estimates = nba("ope", "--data", str(tmp_path), "--candidate", "good").stdout
    assert {"ips", "snips", "dr"} <= set(estimates.split())
    assert "after an action's capacity had run out" in estimates
    nba("report", "--data", str(tmp_path), "--out", str(tmp_path / "decisions.html"))
    page = (tmp_path / "decisions.html").read_text()
    assert page.count("<img") == 5, "lift, Qini, spend, segments, drift"
    # Words first, the period and its budget named, every number in the JSON beside the page.
    assert re.search(
        r"<h2>(No outcomes yet|Not enough data yet|The campaign works|No measur)", page
    )
    assert re.search(r"<b>\$[\d,]+ spent of the \$[\d,]+ budget</b> on [\d,]+ decisions", page)
    assert "Budget period <b>" in page and "<pre>" not in page
    assert json.loads((tmp_path / "decisions.json").read_text())["overall"]

    env |= {"NBA_HOLDOUT_SHARE": str(HOLDOUT), "NBA_EXPLORE_SHARE": str(EXPLORE)}
    done = nba("retrain", "--source", "log", "--data", str(tmp_path))
    arms = saved["arms"]
    said = " ".join(done.stderr.split())  # the console wraps its lines
    used = re.search(r"holdout ([\d,]+) \+ explore ([\d,]+) .*; ([\d,]+) explored picks", said)
    assert used is not None, done.stderr
    holdout, explore, cut = (int(g.replace(",", "")) for g in used.groups())
    assert (holdout, explore + cut) == (arms["holdout"], arms["explore"])
    assert "challenger retrain-" in done.stdout


def test_a_model_learned_from_the_engines_own_arms_outdoes_the_champion_that_logged_them(
    run: Run, tmp_path: Path
) -> None:
    """The flawed champion chose the treatment arm's actions, but the holdout and exploration
    arms stayed randomized: a model learned from them alone targets the right customers."""
    catalog = default_catalog()
    arms = ArmConfig(experiment=EXPERIMENT, holdout_share=HOLDOUT, explore_share=EXPLORE)
    log = experiment_from_log(run.feedback.joined, run.world.customers, catalog, arms)
    report = run.feedback.report()
    assert (log.holdout_rows, log.explore_rows + log.explore_cut) == (
        report["arms"]["holdout"],
        report["arms"]["explore"],
    )
    assert log.without_features == 0 and len(log.frame) == log.holdout_rows + log.explore_rows

    # Per arm, do_nothing's mean retention over the arm's customers is recovered from the rows
    # kept, within 3 SE: in the holdout (propensity 1) as a mean; in exploration by inverse
    # propensity over every explored customer, whose picks a limit cut (left out, served
    # do_nothing, logged limit_reached) contributing nothing, as picks of another action do.
    frame = log.frame
    index = pd.Index(run.world.customers["customer_id"].astype(str))
    joined = run.feedback.joined
    for arm in ("holdout", "explore"):
        kept = frame[frame["arm"] == arm]
        everyone = index.get_indexer(joined.loc[joined["arm"] == arm, "customer_id"].astype(str))
        drawn = (kept["treatment_index"] == 0).to_numpy()
        terms = np.zeros(len(everyone))
        terms[: len(kept)] = np.where(drawn, kept["retained"] / kept["propensity"], 0.0)
        se = terms.std(ddof=1) / np.sqrt(len(terms))
        truth = float(run.world.retained[everyone, 0].mean())
        assert abs(terms.mean() - truth) <= 3 * se, (arm, terms.mean(), truth, se)
    held = frame[frame["arm"] == "holdout"]
    assert (held["treatment_index"] == 0).all() and (held["propensity"] == 1.0).all()

    trained = train_models(frame, catalog.names, "sp", 0)
    export_run(save_run(trained, tmp_path / "run-log", ""), run.registry, "from-log")
    data = off_policy_log(
        run.feedback.joined, run.world.customers, BundleScorer(run.registry, catalog), catalog
    )

    def true_value(version: str) -> float:
        chosen = candidate_decisions(
            data, BundleScorer(run.registry, catalog, version), catalog, data.spend
        )
        return _true_value(run.world, data.snapshot, chosen.action, chosen.cost)

    nothing = _true_value(
        run.world, data.snapshot, np.zeros(len(data.snapshot), dtype=np.int64), np.zeros(1)
    )
    from_log, flipped = true_value("from-log"), true_value("flipped")
    assert from_log > nothing + 100.0 > flipped, (from_log, nothing, flipped)
