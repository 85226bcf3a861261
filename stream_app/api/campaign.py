"""What the campaign page shows, kept current by the API process.

- The decision log: `nba-actions` and `outcomes` read from their beginning by a thread each
  (read_committed, a group of its own that commits nothing), so the page shows what the CRM
  has. It holds every message in memory: about 0.6 KB per decision, so a period of a million
  decisions needs about 0.6 GB; beyond that, `nba report` is the tool.
- The budget curve: the base scored once by the current champion with the project's policy
  and no budget limit (`nba score --all`'s path), each customer's best action; scored again
  when the champion changes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
from confluent_kafka import Consumer

from features.project_repo import scoring_frame
from feedback.campaign_summary import (
    BudgetCurve,
    lift_in_words,
    qini_summary,
    spend_summary,
)
from feedback.experiments import readout
from model_export.manifest import Registry
from model_export.project_serving import ProjectScorer, score_project
from model_export.serving import BundleScorer, decisions_frame, score_all
from policies.arms import ArmConfig
from stream_app import kafka_clients
from stream_app.settings import Settings
from stream_app.topic_log import actions_frame, feedback_from_messages
from stream_app.worker import base_features, policy_config, project_of

__all__ = ["CampaignView", "TopicTail", "base_decisions"]

_LOG = logging.getLogger("nba.api")
_REFRESH_S = 2.0  # the summary is recomputed at most this often
UNLIMITED = 1e15  # a budget no base reaches: each customer gets their best action


class TopicTail:
    """Every committed message of ``topic``, from its beginning, kept up to date by a thread."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer: Consumer = kafka_clients.consumer(
            settings,
            f"nba-api-{uuid.uuid4().hex[:8]}",
            **{"isolation.level": "read_committed", "auto.offset.reset": "earliest"},
        )
        self._consumer.subscribe([topic])
        self._values: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"nba-api-{topic}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            got = [
                m.value()
                for m in self._consumer.consume(500, 0.2)
                if m.error() is None and isinstance(m.value(), bytes)
            ]
            if got:
                with self._lock:
                    self._values.extend(v for v in got if v is not None)

    def values(self) -> list[bytes]:
        with self._lock:
            return list(self._values)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def base_decisions(settings: Settings) -> tuple[str, pd.DataFrame]:
    """(model version, each customer's best action with no budget limit): the project's import
    with its promoted bundle under NBA_PROJECT, else the simulated world's feature sources.
    No holdout and no exploration: the curve is what the model would do with the money."""
    registry = Registry(settings.model_registry)
    project = project_of(settings)
    no_arms = ArmConfig(holdout_share=0.0, explore_share=0.0)
    if project is not None:
        policy = project.policy_config(no_arms)
        scorer = ProjectScorer.load(registry, project, policy.catalog)
        customers = scoring_frame(project, settings.imported_data)
        decided = score_project(customers, project, scorer, policy, UNLIMITED)
        return scorer.version, decisions_frame(customers, decided, scorer.version)
    policy = policy_config(settings).model_copy(update={"arms": no_arms})
    bundle = BundleScorer(registry, policy.catalog, threads=0)
    snapshot = base_features(settings)
    decided = score_all(snapshot, bundle, policy, UNLIMITED)
    return bundle.version, decisions_frame(snapshot, decided, bundle.version)


class CampaignView:
    """The page's numbers: ``summary()`` from the decision log, ``curve()`` from the base."""

    def __init__(
        self,
        settings: Settings,
        score_base: Callable[[], tuple[str, pd.DataFrame]],
        champion: Callable[[], str | None],
    ) -> None:
        self._settings = settings
        self._actions = TopicTail(settings, settings.topic_actions)
        self._outcomes = TopicTail(settings, settings.topic_outcomes)
        self._score_base = score_base
        self._champion = champion
        self._curve: tuple[str, BudgetCurve] | None = None
        self._curve_lock = threading.Lock()
        self._summary: tuple[float, dict[str, Any]] | None = None

    def summary(self) -> dict[str, Any]:
        if self._summary is None or time.monotonic() - self._summary[0] > _REFRESH_S:
            self._summary = (time.monotonic(), self._summarize())
        return self._summary[1]

    def _summarize(self) -> dict[str, Any]:
        actions = self._actions.values()
        period = self._settings.budget_period
        frame = actions_frame(actions)
        mine = frame[frame["budget_period"] == period] if len(frame) else frame
        joined = feedback_from_messages(actions, self._outcomes.values()).joined
        if len(joined):
            joined = joined[joined["budget_period"] == period]
        ab = joined[joined["arm"].isin(["treatment", "holdout"])] if len(joined) else joined
        overall = readout(ab) if len(ab) else {"status": "no data"}
        return {
            "period": period,
            "spend": spend_summary(mine, self._settings.budget),
            "lift": lift_in_words(overall),
            "qini": qini_summary(joined) if len(joined) else None,
            "outcomes_joined": len(joined),
            "as_of": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        }

    def curve(self) -> tuple[str, BudgetCurve]:
        """The budget curve of the current champion (scored again when it changed)."""
        with self._curve_lock:
            champion = self._champion()
            if self._curve is None or self._curve[0] != champion:
                started = time.perf_counter()
                version, decisions = self._score_base()
                self._curve = (version, BudgetCurve.of(decisions))
                _LOG.info(
                    "api: base of %d customers scored by %s in %.1f s",
                    len(decisions),
                    version,
                    time.perf_counter() - started,
                )
            return self._curve

    def close(self) -> None:
        self._actions.close()
        self._outcomes.close()
