"""`nba api serve`: the decision API and the campaign page in one uvicorn process, beside the
workers (it needs the broker, Redis and the feature store they use, not a worker of its own).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from model_export.manifest import Registry
from stream_app import kafka_clients
from stream_app.api.app import create_app
from stream_app.api.campaign import CampaignView, base_decisions
from stream_app.api.gateway import DecisionGateway
from stream_app.api.keys import KeyStore
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.redis_clients import aio_pubsub_client, aio_redis_client
from stream_app.settings import Settings
from stream_app.worker import feature_store, project_feature_store, project_of

__all__ = ["ApiParts", "api_parts", "run_api", "serving"]


@dataclass
class ApiParts:
    app: FastAPI
    gateway: DecisionGateway
    campaign: CampaignView | None

    def close(self) -> None:
        self.gateway.close()
        if self.campaign is not None:
            self.campaign.close()


def _features(settings: Settings) -> FeatureStoreAdapter:
    project = project_of(settings)
    return feature_store(settings) if project is None else project_feature_store(settings, project)


def api_parts(settings: Settings, with_campaign: bool = True) -> ApiParts:
    """The app wired to the settings' broker, Redis, feature store, registry and key file."""
    gateway = DecisionGateway(
        events_topic=settings.topic_events,
        min_interval_s=settings.trigger_min_interval_s,
        timeout_s=settings.api_decision_timeout_s,
        # a request waits for its own event: lingering to batch it with others adds to each
        producer=kafka_clients.producer(settings, **{"linger.ms": 0}),
        aio=aio_redis_client(settings),
        pubsub=aio_pubsub_client(settings),
        features=_features(settings),
    )
    registry = Registry(settings.model_registry)
    campaign = (
        CampaignView(settings, lambda: base_decisions(settings), registry.champion)
        if with_campaign
        else None
    )
    app = create_app(
        keys=KeyStore(settings.keys_file),
        gateway=gateway,
        campaign=campaign,
        max_body_bytes=settings.api_max_body_bytes,
    )
    return ApiParts(app, gateway, campaign)


def _server(settings: Settings, app: FastAPI, loop: str = "auto") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        loop=loop,
        log_level="warning",
        access_log=False,  # the metrics and the worker's logs tell the story; never a header
    )
    return uvicorn.Server(config)


def run_api(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT."""
    parts = api_parts(settings)
    # Everything loaded so far (Feast, pandas, the models) lives as long as the process: out of
    # the collector's sight, a full collection no longer walks it in the middle of a request
    # (p99 spikes of ~200 ms in benchmarks/api_latency.py).
    gc.freeze()
    try:
        _server(settings, parts.app).run()
    finally:
        parts.close()


@contextlib.contextmanager
def serving(settings: Settings, with_campaign: bool = True) -> Iterator[ApiParts]:
    """The API served by a thread (tests and benchmarks), stopped on exit."""
    parts = api_parts(settings, with_campaign)
    # The standard asyncio loop: uvloop's, closed in a thread that is not the main one, fails
    # with EBUSY (seen with uvloop 0.23 here).
    server = _server(settings, parts.app, loop="asyncio")
    thread = threading.Thread(target=server.run, name="nba-api", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the API did not start on port {settings.api_port}")
            threading.Event().wait(0.05)
        yield parts
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        parts.close()
